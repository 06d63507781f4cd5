"""The examples in ``examples/`` run as a new user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from invguard.models import ModelCache

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_your_own_model_example_runs(model_cache: ModelCache, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    env = {**os.environ, "INVGUARD_CACHE_DIR": str(model_cache.root)}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "your_own_model.py"),
            "--quick",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for name in ("mine.pt2", "mine.safetensors", "faces.npz"):
        assert (out / name).is_file(), name
    acc = re.search(r"held-out accuracy ([0-9.]+)", text)
    assert acc is not None, text
    assert float(acc.group(1)) >= 0.8, text
    onnx = (out / "mine.onnx").is_file()
    sources = "program, factory, onnx" if onnx else "program, factory"
    assert f"predictions on the 120 held-out faces: {sources} agree" in text, text
    assert "largest logit gap program vs factory 0.00e+00" in text, text
    verdicts = re.findall(r"^VERDICT \((a|b|c)\) .*: top-1 ([0-9.]+) \((\d+) of (\d+)", text, re.M)
    assert [v[0] for v in verdicts] == (["a", "b", "c"] if onnx else ["a", "b"]), text
    # the same white-box attack, same seed, on the program and the factory: the same result
    assert verdicts[0][1:] == verdicts[1][1:], text
    diff = re.search(r"largest pixel difference ([0-9.e+-]+)", text)
    assert diff is not None, text
    assert float(diff.group(1)) <= 1e-4, text
    assert "invguard attack --model" in text
