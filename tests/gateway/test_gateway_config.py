"""The gateway configuration: one-line errors that name the file and the field."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from invguard.gateway.app import Backend, Gateway, build_policy
from invguard.gateway.config import (
    EXAMPLE_CONFIG,
    GatewayConfigError,
    hash_api_key,
    load_gateway_config,
    parse_gateway_config,
)
from tests.gateway.conftest import KEYS, raw_config


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def error(tmp_path: Path, raw: Any) -> str:
    with pytest.raises(GatewayConfigError) as info:
        load_gateway_config(write(tmp_path, raw))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_valid_config_and_its_defaults(tmp_path: Path) -> None:
    loaded = load_gateway_config(write(tmp_path, raw_config(tmp_path)))
    cfg = loaded.config
    assert cfg.server.host == "127.0.0.1"
    assert [k.id for k in cfg.keys] == list(KEYS)
    assert cfg.keys[0].sha256 == hash_api_key(KEYS["alice"])
    assert cfg.keys[0].unlimited is False
    det = cfg.detection.detectors
    assert (det.knn.k, det.knn.threshold, det.knn.action) == (20, 0.04, "block")
    assert det.blacklight.min_matches == 5
    assert cfg.detection.responses.degraded_output[0].type == "label_only"
    assert loaded.resolve(Path("x.db")) == tmp_path / "x.db"
    assert len(loaded.digest()) == 64
    assert hash_api_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"keys": [{"id": "a", "key": "sk-plain-text-key"}]},
            "keys[0].key: plain-text API keys are not accepted; store only the key's SHA-256 "
            "digest as 'sha256'",
        ),
        (
            {"keys": [{"id": "a", "sha256": "abc"}]},
            "keys[0].sha256: expected the SHA-256 digest of the key as 64 hex digits",
        ),
        ({"keys": []}, "keys: List should have at least 1 item"),
        (
            {"keys": [{"id": "a", "sha256": "0" * 64}, {"id": "a", "sha256": "1" * 64}]},
            "key id 'a' is used twice",
        ),
        (
            {"keys": [{"id": "a", "sha256": "0" * 64}, {"id": "b", "sha256": "0" * 64}]},
            "key 'a' has the same sha256 as another key",
        ),
        ({"keys": [{"id": "bad id!", "sha256": "0" * 64}]}, "keys[0].id: string should match"),
        ({"detecton": {}}, "detecton: unknown field (did you mean 'detection'?)"),
        (
            {"detection": {"detectors": {"knn": {"treshold": 1}}}},
            "detection.detectors.knn.treshold: unknown field (did you mean 'threshold'?)",
        ),
        (
            {"detection": {"detectors": {"knn": {"action": "ban"}}}},
            "detection.detectors.knn.action: input should be 'log', 'alert', 'degrade', "
            "'throttle' or 'block', got 'ban'",
        ),
        (
            {"detection": {"detectors": {"inversion": {"window": 10, "min_queries": 20}}}},
            "'min_queries' (20) must be at most 'window' (10)",
        ),
        ({"model": {"type": "tensorflow"}}, "model.type: unknown type 'tensorflow'"),
        (
            {"model": {"type": "pytorch", "model": "m.pt"}},
            "model: 'input_shape' is required with 'model'",
        ),
        (
            {"model": {"type": "pytorch", "model": "m.pt", "arch": "mlp", "factory": "a.b:c"}},
            "model: give either 'arch' or 'factory', not both",
        ),
        (
            {"model": {"type": "pytorch", "model": "m.pt2", "kwargs": {"width": 2}}},
            "model: 'kwargs' apply to a 'factory' only",
        ),
        (
            {"model": {"type": "upstream", "url": "ftp://x"}},
            "model.url: string should match pattern",
        ),
        (
            {"output": [{"name": "top_k", "params": {"k": 0}}]},
            "output[0].params.k: input should be greater",
        ),
        (
            {"output": [{"name": "blur"}]},
            "output[0].name: unknown output step 'blur' (expected one of: round, top_k, "
            "label_only, noise, reverse_sigmoid)",
        ),
        (
            {"output": [{"name": "top_k", "k": 3}]},
            "output[0].k: unknown field (an output step has 'name' and 'params')",
        ),
        ({"output": [{"name": "top_k", "params": {"kk": 3}}]}, "output[0].params.kk: unknown"),
        (
            {"output": [{"name": "top_k", "params": {"type": "top_k", "k": 3}}]},
            "output[0].params.type: unknown field (the step is named by 'name')",
        ),
        (
            {"keys": [{"id": "a", "sha256": "0" * 64, "output": [{"name": "round", "params": 2}]}]},
            "keys[0].output[0].params: must be a mapping of the step's parameters",
        ),
        # the deprecated spelling's errors name its fields too
        ({"output": [{"type": "top_k", "k": 0}]}, "output[0].k: input should be greater"),
        ({"output": [{"type": "blur"}]}, "output[0].type: unknown type 'blur'"),
        ({"rate_limit": {"rate": 0, "burst": 1}}, "rate_limit.rate: input should be greater"),
        ({"server": {"port": 70000}}, "server.port: input should be less than or equal"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    raw = raw_config(tmp_path)
    raw.update(change)
    got = error(tmp_path, raw)
    assert re.match(rf"{re.escape(str(tmp_path / 'gateway.yaml'))}(:\d+)?: ", got), got
    assert message in got, got


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="gateway configuration file not found"):
        load_gateway_config(tmp_path / "nope.yaml")
    assert "gateway.yaml:3:1: YAML syntax error" in error(tmp_path, "keys:\n  - id: [unclosed\n")
    assert "expected a mapping at the top level, got list" in error(tmp_path, "- 1\n")


def test_policy_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match=r"output\[1\].k: must be at most the number"):
        build_policy(
            parse_gateway_config(
                raw_config(
                    tmp_path,
                    output=[
                        {"name": "round", "params": {"decimals": 2}},
                        {"name": "top_k", "params": {"k": 11}},
                    ],
                )
            ).config.output,
            10,
            "output",
        )


def test_output_steps_in_both_spellings(tmp_path: Path) -> None:
    """``{name, params}`` (as the assessment's output defences) is canonical; the old
    ``{type: ..., <params>}`` gives the same configuration, with a DeprecationWarning naming the
    field and the canonical spelling."""
    canonical = [
        {"name": "top_k", "params": {"k": 3}},
        {"name": "round", "params": {"decimals": 2}},
        {"name": "noise", "params": {"sigma": 0.05, "seed": 1}},
        {"name": "label_only"},
    ]
    old = [
        {"type": "top_k", "k": 3},
        {"type": "round", "decimals": 2},
        {"type": "noise", "sigma": 0.05, "seed": 1},
        {"type": "label_only"},
    ]
    path = tmp_path / "gateway.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the canonical spelling warns of nothing
        new = parse_gateway_config(raw_config(tmp_path, output=canonical), path)
    per_key = raw_config(tmp_path, keys=[{"id": "a", "sha256": "0" * 64, "output": old[-1:]}])
    deprecated = re.escape(f"{path}: keys[0].output[0]: the output step spelling ")
    with pytest.warns(DeprecationWarning, match=deprecated + r".* write \{name: label_only\}$"):
        parse_gateway_config(per_key, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy = parse_gateway_config(raw_config(tmp_path, output=old), path)
    assert [w.category for w in caught] == [DeprecationWarning] * len(old)
    assert str(caught[0].message) == (
        f"{path}: output[0]: the output step spelling {{type: top_k, ...}} is deprecated; "
        "write {name: top_k, params: {k: 3}}"
    )
    assert new.config.output == legacy.config.output
    assert new.digest() == legacy.digest()
    policy = build_policy(new.config.output, 10, "output")
    assert policy.labels_only
    assert policy.description == build_policy(legacy.config.output, 10, "output").description


def test_example_config_is_valid_and_canonical(tmp_path: Path) -> None:
    digest = hash_api_key("k")
    text = EXAMPLE_CONFIG.replace('"<64 hex digits>"', f'"{digest}"')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_gateway_config(write(tmp_path, text))
    assert [s.type for s in loaded.config.output] == ["top_k", "round"]


def test_missing_webhook_secret(tmp_path: Path, digits_backend: Backend) -> None:
    loaded = parse_gateway_config(
        raw_config(
            tmp_path,
            alerts={"webhook": {"url": "http://127.0.0.1:9/hook", "secret_env": "IG_NO_SUCH_VAR"}},
        ),
        tmp_path / "gateway.yaml",
    )
    with pytest.raises(GatewayConfigError, match="secret_env: environment variable IG_NO_SUCH_VAR"):
        Gateway(loaded, backend=digits_backend)
