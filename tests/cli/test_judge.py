"""``invguard judge``: any tool's reconstructions, judged with every judge; bad input is exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from invguard.data import load_digits_dataset
from invguard.metrics import wilson_interval
from tests.cli._cli import run_cli as _run


@pytest.mark.parametrize(
    ("array", "labels", "message"),
    [
        (np.zeros((3, 1, 8, 9), np.float32), None, "must have shape (n, 1, 8, 8)"),
        (np.full((3, 1, 8, 8), 1.5, np.float32), None, "must lie in [0, 1]"),
        (np.full((3, 1, 8, 8), np.nan, np.float32), None, "NaN"),
        (np.zeros((3, 1, 8, 8), np.int64), None, "float values"),
        (np.zeros((3, 1, 8, 8), np.float32), np.array([0, 1, 12]), "class 12 is out of range"),
        (np.zeros((3, 1, 8, 8), np.float32), np.array([0, 1]), "--labels must have shape (3,)"),
        (np.zeros((12, 1, 8, 8), np.float32), None, "--labels is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    array: np.ndarray,
    labels: np.ndarray | None,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recons = tmp_path / "r.npy"
    np.save(recons, array)
    args = ["judge", str(recons), "--dataset", "digits", "--cache-dir", str(tmp_path), "-q"]
    if labels is not None:
        np.save(tmp_path / "l.npy", labels)
        args += ["--labels", str(tmp_path / "l.npy")]
    code, out, err = _run(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_a_pickle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recons = tmp_path / "r.npy"
    np.save(recons, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    code, _, err = _run(["judge", str(recons), "--dataset", "digits", "-q"], capsys)
    assert code == 2
    assert "without pickle" in err


@pytest.mark.slow
def test_held_out_photos_get_a_high_verdict_and_noise_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = load_digits_dataset()
    first = np.array([np.flatnonzero(ds.y_test == c)[0] for c in range(ds.num_classes)])
    np.save(tmp_path / "held.npy", ds.x_test[first])
    cache = ["--cache-dir", str(tmp_path / "cache"), "-q"]
    code, out, _ = _run(["judge", str(tmp_path / "held.npy"), "--dataset", "digits", "--json", *cache], capsys)  # fmt: skip
    assert code == 0
    s = json.loads(out)
    assert s["verdict_top1"] >= 0.9
    assert set(s["judges"]) == {"evaluation-model", "second-evaluation-model", "pixel-ssim"}
    assert s["calibration"]["artefacts"]["note"].endswith("the target gives no gradients)")
    noise = np.random.default_rng(3).random((10, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "noise.npy", noise)
    code, out, _ = _run(["judge", str(tmp_path / "noise.npy"), "--dataset", "digits", *cache], capsys)  # fmt: skip
    assert code == 0
    assert "VERDICT top-1" in out
    verdict = float(out.split("VERDICT top-1 ")[1].split()[0])
    assert verdict <= 0.2  # 2x chance
    hits = round(verdict * 10)
    lo, hi = (f"{v:.2f}" for v in wilson_interval(hits, 10))
    assert f"VERDICT top-1 {verdict:.3f} [95% CI {lo}-{hi}] ({hits} of 10 identities" in out
