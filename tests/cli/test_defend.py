"""`invguard defend evaluate` and the `defenses:` section of the assessment config, end to end on
digits, plus its bad input: one line, the field named, exit 2, nothing written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from invguard.assess.config import load_config
from invguard.cli import main
from invguard.models import ModelCache

CONFIG: dict[str, Any] = {
    "name": "digits with defences",
    "systems": [
        {
            "id": "digits-softmax",
            "target": {"type": "pytorch", "reference": {"arch": "softmax"}},
            "data": {"builtin": "digits"},
            "attacks": [{"name": "miface"}],
            "defenses": {
                "max_accuracy_drop": 0.7,
                "training": [{"name": "dp-sgd", "params": {"epsilon": 1.0}}],
                "output": [{"name": "round", "params": {"decimals": 1}}],
            },
        }
    ],
}


def _write(tmp: Path, cfg: dict[str, Any]) -> Path:
    p = tmp / "invguard.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize(
    ("defenses", "message"),
    [
        (
            {"training": [{"name": "dp-sgd", "params": {"epsilon": 0}}]},
            "systems[0].defenses.training[0]: The 'epsilon' parameter must be a float > 0.0, got 0",
        ),
        (
            {"output": [{"name": "round", "params": {"decimals": -1}}]},
            "systems[0].defenses.output[0]: The 'decimals' parameter must be an int >= 0, got -1",
        ),
        (
            {"output": [{"name": "top_k", "params": {"k": 11}}]},
            "systems[0].defenses.output[0]: The 'k' parameter must be <= the number of classes "
            "(10), got 11",
        ),
        (
            {"training": [{"name": "label-smoothing", "params": {"alfa": -1}}]},
            "unknown parameter 'alfa' for training defence 'label-smoothing'",
        ),
        ({"output": [{"name": "blur"}]}, "unknown output defence 'blur'"),
        ({"max_accuracy_drop": 0.1}, "list at least one defence under 'training' or 'output'"),
    ],
)
def test_bad_defence_config_is_one_line_with_the_field(
    tmp_path: Path,
    model_cache: ModelCache,
    capsys: pytest.CaptureFixture[str],
    defenses: dict[str, object],
    message: str,
) -> None:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["systems"][0]["defenses"] = defenses
    path = _write(tmp_path, cfg)
    out = tmp_path / "out"
    cache = ["--cache-dir", str(model_cache.root)]
    code = main(["defend", "evaluate", "-c", str(path), "--out", str(out), *cache, "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err, err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_training_defences_need_a_model_that_can_be_retrained(tmp_path: Path) -> None:
    from invguard.assess.config import ConfigError
    from invguard.assess.defend import check_defenses
    from invguard.data import load_digits_dataset

    cfg = json.loads(json.dumps(CONFIG))
    cfg["systems"][0]["target"] = {"type": "onnx", "model": "model.onnx"}
    system = load_config(_write(tmp_path, cfg)).config.systems[0]
    with pytest.raises(ConfigError, match=r"systems\[0\]\.defenses\.training: training-time"):
        check_defenses(system, load_digits_dataset(), "systems[0]")


def test_cli_flags_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["defend", "evaluate", "--queries", "0"]) == 2
    assert "--queries: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert main(["defend", "evaluate", "--training", "dp-sgd:epsilon"]) == 2
    assert "expected key=value" in capsys.readouterr().err
    path = _write(tmp_path, CONFIG)
    assert main(["defend", "evaluate", "-c", str(path), "--training", "mid:beta=0.1"]) == 2
    assert "with --config list the defences" in capsys.readouterr().err
    assert main(["defend", "evaluate", "-c", str(path), "--system", "nope"]) == 2
    assert "no system with id 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_defend_evaluate_and_assessment_cite_the_measured_defence(
    tmp_path: Path, model_cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, CONFIG)
    history = tmp_path / "history.db"
    common = ["--cache-dir", str(model_cache.root), "--history-db", str(history)]
    code = main(["defend", "evaluate", "-c", str(path), "--out", str(tmp_path / "d"), *common])
    out = capsys.readouterr().out
    assert code == 0
    assert "dp-sgd(epsilon=1.0)" in out
    assert "RECOMMENDED (white-box)" in out
    data = json.loads((tmp_path / "d" / "defenses.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    base, dp = rows["none"], rows["dp-sgd(epsilon=1.0)"]
    assert dp["attacks"]["miface"]["top1"] <= base["attacks"]["miface"]["top1"] - 0.2
    # the budget of 70 points admits DP-SGD, which leaks least
    assert data["threats"]["white-box"]["recommended"] == "dp-sgd(epsilon=1.0)"
    assert (tmp_path / "d" / "defenses.png").stat().st_size > 10_000

    # the assessment reuses the stored evaluation and cites it in the white-box finding
    started = time.perf_counter()
    code = main(["assess", "-c", str(path), "--out", str(tmp_path / "a"), *common, "-q"])
    reused_seconds = time.perf_counter() - started
    assert code == 1  # the undefended model still leaks: the gate trips
    report = json.loads((tmp_path / "a" / "assessment.json").read_text())
    system = report["systems"][0]
    assert system["defense_evaluation"]["rows"] == data["rows"]
    finding = next(f for f in system["findings"] if f["kind"] == "measured")
    assert finding["recommendation"].startswith("Measured: dp-sgd(epsilon=1.0) (training defence)")
    assert "invguard defend evaluate" in finding["recommendation"]
    assert finding["evidence"]["defense_evaluation"]["recommended"] == "dp-sgd(epsilon=1.0)"
    html = (tmp_path / "a" / "assessment.html").read_text()
    assert "Defences measured" in html
    assert reused_seconds < 60
