"""The command line, run in-process through ``invguard.cli.main`` on real models and data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from invguard.cli import main
from invguard.models import ModelCache
from tests.cli._cli import run_cli as _run


@pytest.fixture(scope="module")
def digits_model(
    tmp_path_factory: pytest.TempPathFactory, model_cache: ModelCache
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    cache = model_cache.root  # the session's cache: the judges are trained once
    path = root / "digits-mlp.safetensors"
    assert main(["train", "--arch", "mlp", "--dataset", "digits", "--out", str(path),
                 "--cache-dir", str(cache), "-q"]) == 0  # fmt: skip
    return path, cache


def test_train_then_attack_writes_a_report(
    digits_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = digits_model
    out = tmp_path / "report"
    code, stdout, _ = _run(
        ["attack", "--model", str(model), "--arch", "mlp", "--dataset", "digits",
         "--classes", "0-4,9", "--out", str(out), "--cache-dir", str(cache), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert "VERDICT top-1" in stdout
    data = json.loads((out / "report.json").read_text())
    assert [r["class"] for r in data["per_class"]] == [0, 1, 2, 3, 4, 9]
    assert data["metrics"]["top1_accuracy"] >= 0.8
    assert data["judgement"]["verdict_top1"] >= 0.8
    assert data["dataset"]["source"] == "digits"
    assert data["target"]["source"] == str(model)
    assert (out / "report.html").stat().st_size > 5000


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_inputs_give_one_line_errors_and_no_report(
    digits_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = digits_model
    out = tmp_path / "never"
    base = ["--dataset", "digits", "--out", str(out), "--cache-dir", str(cache), "-q"]

    not_state = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], not_state)
    code, _, err = _run(["attack", "--model", str(not_state), "--arch", "mlp", *base], capsys)
    _one_line_error(code, err, "not a state dict")

    code, _, err = _run(["attack", "--model", str(model), "--arch", "vgg", *base], capsys)
    _one_line_error(code, err, "--arch", "invalid choice", "'vgg'")

    code, _, err = _run(
        ["attack", "--model", str(model), "--arch", "mlp", "--classes", "3,12", *base], capsys
    )
    _one_line_error(code, err, "class index 12 is out of range", "10 classes")

    code, _, err = _run(["attack", "--model", str(model), "--arch", "cnn", *base], capsys)
    _one_line_error(code, err, "does not fit architecture 'cnn'")

    code, _, err = _run(
        ["attack", "--model", str(tmp_path / "missing.pt"), "--arch", "mlp", *base], capsys
    )
    _one_line_error(code, err, "model file not found")

    code, _, err = _run(["attack", "--model", str(model), "--arch", "mlp", "--classes", "x", *base],
                        capsys)  # fmt: skip
    _one_line_error(code, err, "expected class indices")
    assert not out.exists()


def test_image_size_the_model_does_not_accept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    model = tmp_path / "faces-softmax.safetensors"
    assert main(["train", "--arch", "softmax", "--out", str(model), "--cache-dir", str(cache),
                 "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    code, _, err = _run(
        ["attack", "--model", str(model), "--arch", "softmax", "--image-size", "92x112",
         "--out", str(tmp_path / "r"), "--cache-dir", str(cache), "-q"],
        capsys,
    )  # fmt: skip
    _one_line_error(code, err, "another image size", "92x112")
    code, _, err = _run(["attack", "--model", str(model), "--arch", "softmax", "--image-size",
                         "92by112"], capsys)  # fmt: skip
    _one_line_error(code, err, "WIDTHxHEIGHT")
    assert not (tmp_path / "r").exists()


def test_invalid_attack_setting_is_named(
    digits_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, cache = digits_model
    code, _, err = _run(
        ["attack", "--model", str(model), "--arch", "mlp", "--dataset", "digits",
         "--step-size", "-1", "--out", str(tmp_path / "r"), "--cache-dir", str(cache)],
        capsys,
    )  # fmt: skip
    _one_line_error(code, err, "'step_size' parameter must be a float > 0.0, got -1.0")
