"""``invguard attack`` and the assessment config with the user's own model: a torch.export program,
a factory of the user's own code plus weights, the user's own data, and the refused formats."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from invguard.assess.config import ConfigError, load_config
from invguard.assess.systems import build_target
from invguard.data import ImageDataset
from invguard.models import ModelCache
from tests.cli._cli import run_cli as _run
from tests.models.user_cnn import UserCNN, train_user_cnn

FACTORY = "tests.models.user_cnn:build_user_cnn"


@pytest.fixture(scope="module")
def mine(digits: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mine")
    model = train_user_cnn(digits.x_train, digits.y_train, epochs=4)
    program = root / "mine.pt2"
    example = torch.zeros(2, *digits.image_shape)
    exported = torch.export.export(
        model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(exported, program)
    weights = root / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return {"program": program, "weights": weights, "root": root}


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "weights_only=False" not in lines[0]
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_refused_formats_exit_2_with_a_hint(
    mine: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    base = ["--dataset", "digits", "--out", str(out), "-q"]
    script = tmp_path / "ts.pt"
    torch.jit.save(
        torch.jit.trace(  # type: ignore[no-untyped-call]
            UserCNN().eval(), torch.zeros(2, 1, 8, 8)
        ),
        str(script),
    )
    whole = tmp_path / "whole.pt"
    torch.save(UserCNN(), whole)
    joblib = tmp_path / "model.joblib"
    joblib.write_bytes(pickle.dumps({"a": 1}))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        (["--model", str(script)], ("TorchScript", "torch.export.save")),
        (["--model", str(whole), "--factory", FACTORY], ("pickled Python object", "UserCNN")),
        (["--model", str(joblib)], ("skops",)),
        (["--model", str(onnx)], ("type: onnx", "black box")),
        (["--model", str(mine["weights"])], ("holds weights only", "factory")),
        (["--model", str(mine["program"]), "--arch", "cnn"], ("drop arch/factory",)),
        (["--model", str(mine["weights"]), "--factory-kwargs", "{}"], ("needs --factory",)),
        (
            ["--model", str(mine["weights"]), "--factory", FACTORY, "--factory-kwargs", "[1]"],
            ("must be a JSON object",),
        ),
        (
            ["--model", str(mine["weights"]), "--factory", FACTORY, "--factory-kwargs", "{x"],
            ("--factory-kwargs must be a JSON object",),
        ),
        (["--model", str(mine["program"]), "--data", str(tmp_path / "x.npz")], ("either --data",)),
    ]
    for extra, needles in cases:
        code, _, err = _run(["attack", *extra, *base], capsys)
        _one_line_error(code, err, *needles)
    code, _, err = _run(
        ["attack", "--model", str(mine["program"]), "--data", str(tmp_path / "x.npz"), "-q"],
        capsys,
    )
    _one_line_error(code, err, "data file not found")
    code, _, err = _run(
        ["attack", "--model", str(mine["program"]), "--data", str(whole), "-q"], capsys
    )
    _one_line_error(code, err, "--data must be a folder")
    assert not out.exists()


def test_attack_a_program_and_a_factory_from_the_command_line(
    mine: dict[str, Path],
    model_cache: ModelCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["--dataset", "digits", "--attack", "miface", "--max-iterations", "20",
              "--classes", "0-2", "--cache-dir", str(model_cache.root), "-q"]  # fmt: skip
    reports = []
    for name, source in (
        ("program", ["--model", str(mine["program"])]),
        ("factory", ["--model", str(mine["weights"]), "--factory", FACTORY,
                     "--factory-kwargs", '{"width": 12}']),
    ):  # fmt: skip
        out = tmp_path / name
        code, stdout, err = _run(["attack", *source, *common, "--out", str(out)], capsys)
        assert code == 0, err
        assert "VERDICT top-1" in stdout
        reports.append(json.loads((out / "report.json").read_text()))
    program, factory = reports
    assert program["target"]["kind"] == "torch.export program"
    assert factory["target"]["kind"] == "factory + weights"
    assert factory["target"]["factory"] == FACTORY
    assert program["target"]["test_accuracy"] == pytest.approx(
        factory["target"]["test_accuracy"], abs=1e-6
    )
    conf = [[r["target_confidence"] for r in rep["per_class"]] for rep in reports]
    np.testing.assert_allclose(conf[0], conf[1], atol=1e-3)


def _config(tmp_path: Path, target: str) -> Path:
    path = tmp_path / "invguard.yaml"
    path.write_text(
        f"""systems:
  - id: mine
    target: {target}
    data: {{builtin: digits}}
    attacks:
      - name: miface
"""
    )
    return path


def test_config_program_and_factory_targets(
    mine: dict[str, Path], digits: ImageDataset, tmp_path: Path
) -> None:
    prog = mine["program"]
    weights = mine["weights"]
    cache = ModelCache(tmp_path / "cache")
    built = {}
    for name, target in (
        ("program", f"{{type: pytorch, program: {prog}}}"),
        (
            "factory",
            f"{{type: pytorch, model: {weights}, factory: '{FACTORY}', kwargs: {{width: 12}}, "
            "model_output: logits}",
        ),
    ):
        loaded = load_config(_config(tmp_path, target))
        system = loaded.config.systems[0]
        built[name] = build_target(
            system.target, digits, cache, "systems[0].target", loaded.resolve
        )
    x = digits.x_test[:32]
    np.testing.assert_allclose(
        built["program"].target.predict(x), built["factory"].target.predict(x), atol=1e-5
    )
    assert built["program"].info["kind"] == "torch.export program"
    assert built["factory"].fingerprint != built["program"].fingerprint
    for target, message in (
        (f"{{type: pytorch, program: {prog}, arch: cnn}}", "apply to 'model' (weights) only"),
        (f"{{type: pytorch, model: {weights}}}", "needs exactly one of 'factory' or 'arch'"),
        (f"{{type: pytorch, model: {weights}, factory: 'a.b'}}", "string should match pattern"),
        (f"{{type: pytorch, program: {prog}, model: {weights}}}", "set exactly one of 'program'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(_config(tmp_path, target))
    bad = load_config(_config(tmp_path, f"{{type: pytorch, program: {weights}}}"))
    with pytest.raises(ConfigError) as info:
        build_target(bad.config.systems[0].target, digits, cache, "systems[0].target", bad.resolve)
    assert str(info.value).startswith("systems[0].target.program: ")
    assert "torch.export" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_attack_with_the_users_own_data_file(
    mine: dict[str, Path],
    digits: ImageDataset,
    model_cache: ModelCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "private.npz"
    np.savez(data, x_train=digits.x_train, y_train=digits.y_train, x_test=digits.x_test,
             y_test=digits.y_test)  # fmt: skip
    out = tmp_path / "report"
    code, stdout, err = _run(
        ["attack", "--model", str(mine["program"]), "--data", str(data), "--attack", "miface",
         "--classes", "0-4", "--cache-dir", str(model_cache.root), "--out", str(out), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "VERDICT top-1" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["name"] == "npz:private"


def test_attack_with_normalize_shows_the_declared_io(
    mine: dict[str, Path],
    model_cache: ModelCache,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["attack", "--model", str(mine["program"]), "--dataset", "digits", "--attack",
              "miface", "--max-iterations", "5", "--classes", "0", "--cache-dir",
              str(model_cache.root), "-q"]  # fmt: skip
    for bad, needle in (
        ("abc", "expected MEAN[,MEAN..]/STD[,STD..]"),
        ("0.5/0", "every STD must be > 0"),
        ("0.1,0.2,0.3/0.5", "'normalize' parameter's mean must have 1 value"),
    ):
        code, _, err = _run([*common, "--normalize", bad, "--out", str(tmp_path / "x")], capsys)
        _one_line_error(code, err, needle)
    out = tmp_path / "report"
    code, _, err = _run([*common, "--normalize", "0.5/0.5", "--out", str(out)], capsys)
    assert code == 0, err
    target = json.loads((out / "report.json").read_text())["target"]
    assert target["io"] == {
        "input_shape": [1, 8, 8],
        "value_range": [0.0, 1.0],
        "output": "logits",
        "num_classes": 10,
        "normalize": {"mean": [0.5], "std": [0.5]},
        "class_names": target["io"]["class_names"],
    }
    assert len(target["io"]["class_names"]) == 10
    html = (out / "report.html").read_text()
    assert "Model I/O" in html
    assert "normalised (x - mean) / std before the model with mean 0.5 and std 0.5" in html


def test_config_normalize(mine: dict[str, Path], digits: ImageDataset, tmp_path: Path) -> None:
    prog = mine["program"]
    cache = ModelCache(tmp_path / "cache")
    built = {}
    for name, extra in (("plain", ""), ("norm", ", normalize: {mean: [0.5], std: [0.5]}")):
        loaded = load_config(_config(tmp_path, f"{{type: pytorch, program: {prog}{extra}}}"))
        built[name] = build_target(
            loaded.config.systems[0].target, digits, cache, "systems[0].target", loaded.resolve
        )
    x = digits.x_test[:16]
    np.testing.assert_allclose(
        built["norm"].target.predict(x),
        built["plain"].target.predict(((x - 0.5) / 0.5).astype(np.float32)),
        atol=1e-5,
    )
    assert built["norm"].info["io"]["normalize"] == {"mean": [0.5], "std": [0.5]}
    assert "normalize" not in built["plain"].info["io"]
    assert built["norm"].info["io"]["input_shape"] == [1, 8, 8]
    assert built["norm"].fingerprint != built["plain"].fingerprint
    for extra, message in (
        ("normalize: {mean: [0.5], std: [0]}", "normalize.std[0]: input should be greater than 0"),
        ("normalize: {mean: [0.5]}", "normalize.std"),
        ("normalize: {mean: [0.5], std: [0.5], scale: 2}", "normalize.scale"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(_config(tmp_path, f"{{type: pytorch, program: {prog}, {extra}}}"))
        assert "\n" not in str(info.value)
        assert message in str(info.value), str(info.value)
    three = "{mean: [0, 0, 0], std: [1]}"
    bad = load_config(_config(tmp_path, f"{{type: pytorch, program: {prog}, normalize: {three}}}"))
    with pytest.raises(ConfigError) as info:
        build_target(bad.config.systems[0].target, digits, cache, "systems[0].target", bad.resolve)
    assert str(info.value).startswith("systems[0].target.normalize: ")
    assert "\n" not in str(info.value)
