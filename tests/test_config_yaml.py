"""Safe configuration YAML: an alias bomb, oversized, too deep or ambiguous files are refused at
once with one line naming the file and the line, through the real CLI (exit 2); validation errors
name their line; the config models take no bool for an int and no string for a number."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from invguard.assess.config import ConfigError, load_config
from invguard.config_yaml import MAX_CONFIG_BYTES, MAX_DEPTH, load_yaml_config
from invguard.gateway.config import GatewayConfigError, load_gateway_config
from tests.cli._cli import run_cli

KEY = "0" * 64


def _bomb(indent: str) -> list[str]:
    """Nine levels of ten aliases each under a mapping: 10**9 strings once expanded."""
    lines = [f'{indent}l0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"{indent}l{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]")
    return lines


def _assess_bomb(tmp_path: Path) -> tuple[Path, int]:
    head = [
        "version: 1",
        "systems:",
        "  - id: api",
        "    target:",
        "      type: http",
        "      url: http://127.0.0.1:9/v1/predict",
        "      request_template:",
    ]
    tail = [
        '        inputs: "$inputs"',
        "    data: {builtin: digits}",
        "    attacks: [{name: auto}]",
    ]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*head, *_bomb("        "), *tail]) + "\n")
    return path, len(head) + 1


def _gateway_bomb(tmp_path: Path) -> tuple[Path, int]:
    head = [
        "version: 1",
        "model:",
        "  type: upstream",
        "  url: http://127.0.0.1:9/v1/predict",
        "  input_shape: [1, 8, 8]",
        "  num_classes: 10",
        "  request_template:",
    ]
    tail = ['    inputs: "$inputs"', f"keys: [{{id: alice, sha256: '{KEY}'}}]"]
    path = tmp_path / "gateway-bomb.yaml"
    path.write_text("\n".join([*head, *_bomb("    "), *tail]) + "\n")
    return path, len(head) + 1


@pytest.mark.parametrize(
    ("command", "make"),
    [(["assess"], _assess_bomb), (["serve", "--check"], _gateway_bomb)],
    ids=["assess", "serve-check"],
)
def test_an_alias_bomb_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], make: object
) -> None:
    assert callable(make)
    path, line = make(tmp_path)
    assert path.stat().st_size < 1000  # some 800 bytes, 10**9 strings once expanded
    # the first call imports the command's modules; that time is not the configuration's
    code, _, err = run_cli([*command, "-c", str(tmp_path / "none.yaml")], capsys)
    assert code == 2
    assert "not found" in err
    start = time.perf_counter()
    code, out, err = run_cli([*command, "-c", str(path)], capsys)
    seconds = time.perf_counter() - start
    assert code == 2
    assert out == ""
    assert err == (
        f"invguard: error: {path}:{line}: YAML anchors and aliases (&a0) are not accepted in a "
        "configuration; write the value out\n"
    )
    assert seconds < 1.0, seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: &x {c: 1}\n", ":2: YAML anchors and aliases (&x) are not accepted"),
        ("a: 1\nb:\n  <<: *x\n", ":3: YAML anchors and aliases (*x) are not accepted"),
        ("a: 1\nb:\n  c: 2\n  c: 3\n", ":4: key 'c' is given twice"),
        ("a:\n  - " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", ":2: nested more than"),
        ("a: " + "9" * 5000 + "\n", ": cannot read a value: Exceeds the limit (4300 digits)"),
        ("a: [1,\n", ":2:1: YAML syntax error"),
        ("a: !!python/object:os.system x\n", ":1:4: YAML syntax error: could not determine"),
    ],
    ids=["anchor", "merge-alias", "duplicate", "deep", "huge-int", "syntax", "python-tag"],
)
def test_unsafe_or_ambiguous_yaml_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml_config(path)
    got = str(info.value)
    assert got.startswith(f"{path}{message}"), got
    assert "\n" not in got


def test_size_cap_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"version: 1\n" + b"#" * MAX_CONFIG_BYTES)
    with pytest.raises(GatewayConfigError, match=r"big.yaml: configuration file is larger than"):
        load_gateway_config(path)
    path.write_bytes(b"version: 1\nname: \xff\n")
    with pytest.raises(ConfigError, match=r"big.yaml: cannot read configuration: not UTF-8"):
        load_config(path)
    path.write_bytes(b"a: 1\n" + b"#" * (MAX_CONFIG_BYTES - 10))  # just under the cap: read
    assert load_yaml_config(path).data == {"a": 1}


ASSESS = """\
version: 1
systems:
  - id: faces
    target:
      type: pytorch
      reference: {arch: mlp}
    data: {builtin: digits}
    attacks:
      - name: miface
        seeds: [0, 1]
        budget: {iterations: 10, seconds: 30}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("seeds: [0, 1]", "seeds: [0, true]",
         ":10: systems[0].attacks[0].seeds[1]: input should be a valid integer, got True"),
        ("iterations: 10", 'iterations: "10"',
         ":11: systems[0].attacks[0].budget.iterations: input should be a valid integer, got '10'"),
        ("iterations: 10", "iterations: 10.0",
         ":11: systems[0].attacks[0].budget.iterations: input should be a valid integer, got 10.0"),
        ("seconds: 30", 'seconds: "30"',
         ":11: systems[0].attacks[0].budget.seconds: input should be a valid number, got '30'"),
        ("{arch: mlp}", "{arch: mlp, seed: false}",
         ":6: systems[0].target.reference.seed: input should be a valid integer, got False"),
        ("version: 1", "version: true", ":1: version: input should be 1, got True"),
        ("        seeds", "        sedes", ":10: systems[0].attacks[0].sedes: unknown field"),
        ("    data: {builtin: digits}\n", "", ":3: systems[0].data: required field missing"),
    ],
)  # fmt: skip
def test_assessment_types_are_strict_and_errors_give_the_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    _assert_refused(
        tmp_path / "invguard.yaml", ASSESS, (old, new), load_config, ConfigError, message
    )


def test_numbers_still_take_integers(tmp_path: Path) -> None:
    path = tmp_path / "invguard.yaml"
    path.write_text(ASSESS)  # seconds: 30 is a float field given an int
    budget = load_config(path).config.systems[0].attacks[0].budget
    assert budget.seconds == 30.0
    assert isinstance(budget.seconds, float)
    assert budget.iterations == 10


GATEWAY = f"""\
version: 1
server:
  port: 8080
model:
  type: pytorch
  reference: {{arch: softmax, data: digits}}
keys:
  - id: alice
    sha256: "{KEY}"
    detect: true
rate_limit: {{rate: 100, burst: 200}}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("port: 8080", 'port: "8080"', ":3: server.port: input should be a valid integer, got '8080'"),
        ("detect: true", "detect: 1", ":10: keys[0].detect: input should be a valid boolean, got 1"),
        ("detect: true", "detect: yes please",
         ":10: keys[0].detect: input should be a valid boolean, got 'yes please'"),
        ("burst: 200", "burst: true", ":11: rate_limit.burst: input should be a valid integer, got True"),
        ("rate: 100", 'rate: "100"', ":11: rate_limit.rate: input should be a valid number, got '100'"),
    ],
)  # fmt: skip
def test_gateway_types_are_strict_and_errors_give_the_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path, loader = tmp_path / "gateway.yaml", load_gateway_config
    _assert_refused(path, GATEWAY, (old, new), loader, GatewayConfigError, message)


def test_the_valid_gateway_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY)
    cfg = load_gateway_config(path).config
    assert cfg.rate_limit is not None
    assert cfg.rate_limit.rate == 100.0
    assert cfg.server.port == 8080
    assert cfg.keys[0].detect is True
    assert re.fullmatch("[0-9a-f]{64}", cfg.keys[0].sha256)


@pytest.mark.parametrize("value", ["*x", "&a 1", "[1"])
def test_command_line_yaml_values_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, out, err = run_cli(["defend", "evaluate", "--training", f"dp-sgd:noise={value}"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(f"invguard: error: --training 'dp-sgd:noise={value}': cannot read ")
    assert len(err.splitlines()) == 1


def _assert_refused(
    path: Path,
    doc: str,
    edit: tuple[str, str],
    load: Callable[[Path], object],
    error: type[ConfigError],
    message: str,
) -> None:
    """``doc`` with ``edit`` applied is refused (``error``) in one line starting ``path:line:``."""
    old, new = edit
    assert old in doc
    path.write_text(doc.replace(old, new, 1))
    with pytest.raises(error) as info:
        load(path)
    got = str(info.value)
    assert got.startswith(f"{path}{message}"), got
    assert "\n" not in got
