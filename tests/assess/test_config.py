from __future__ import annotations

import re
from pathlib import Path

import pytest

from invguard.assess.config import ConfigError, load_config
from invguard.assess.templates import EXAMPLE_CONFIG
from invguard.cli import main


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "invguard.yaml"
    p.write_text(text)
    return p


def test_example_config_is_valid(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, EXAMPLE_CONFIG))
    cfg = loaded.config
    assert [s.id for s in cfg.systems] == ["faces-mlp", "faces-softmax", "census-income"]
    assert cfg.systems[0].attacks[0].budget.iterations == 1000
    assert cfg.systems[0].controls[0].status == "missing"
    assert loaded.resolve(cfg.output_dir) == tmp_path / "invguard-assessment"
    assert len(loaded.digest()) == 64


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    target:", "    targt:", "systems[0].targt: unknown field (did you mean 'target'?)"),
        ("fail_on: high", "fail_on: severe", "fail_on: input should be 'critical'"),
        ("seeds: [0]\n        budget: {iterations: 1000, seconds", "seeds: [x]\n        budget: {iterations: 1000, seconds",
         "systems[0].attacks[0].seeds[0]: input should be a valid integer"),
        ("- name: miface              # white-box MI-FACE (Fredrikson et al. 2015)", "- name: mifase",
         "systems[0].attacks[0].name: unknown attack 'mifase' (expected one of: auto, attribute, brep, gmi, ifgmi, learned, miface, miface-zo, plg, ppa, ppdg)"),
        ("params: {}", "params: {step_size: -1}",
         "systems[0].attacks[0]: The 'step_size' parameter must be a float > 0.0, got -1"),
        ("params: {}", "params: {tv_wieght: 0.1}",
         "unknown parameter 'tv_wieght' for attack 'miface'"),
        ("budget: {iterations: 1000, seconds: 300}", "budget: {iterations: 0}",
         "systems[0].attacks[0].budget.iterations: input should be greater than or equal to 1, got 0"),
        ("  - id: faces-softmax", "  - id: faces-mlp", "system id 'faces-mlp' is used twice"),
        ("data: {builtin: att-faces}", "data: {builtin: celeba}", "systems[0].data"),
        ("      reference: {arch: mlp, seed: 0}", "      arch: mlp",
         "systems[0].target: set exactly one of 'program' (a torch.export .pt2), 'model' (weights, with 'factory' or 'arch') or 'reference'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in EXAMPLE_CONFIG
    path = _write(tmp_path, EXAMPLE_CONFIG.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert re.match(rf"{re.escape(str(path))}(:\d+)?: ", text), text  # the file, and the line
    assert "\n" not in text
    assert message.lower() in text.lower(), text


def test_yaml_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"invguard.yaml:3:1: YAML syntax error"):
        load_config(_write(tmp_path, "version: 1\nsystems: [\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_cli_init_and_bad_inputs_exit_2_without_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "invguard.yaml"
    assert main(["init", str(cfg)]) == 0
    assert main(["init", str(cfg)]) == 2
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "report"
    missing_model = EXAMPLE_CONFIG.replace(
        "      reference: {arch: mlp, seed: 0}",
        "      model: models/nope.safetensors\n      arch: mlp",
    )
    cfg.write_text(missing_model)
    code = main(["assess", "-c", str(cfg), "--out", str(out), "-q", "--no-audit"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "systems[0].target.model: model file not found" in err
    assert not out.exists()
    assert not (tmp_path / "invguard-history.db").exists()  # checked before anything is written
    code = main(
        ["assess", "-c", str(cfg), "--executor", "ray", "--ray-address", "127.0.0.1:1", "-q"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "--ray-address: no Ray cluster answers at '127.0.0.1:1'" in err
