"""``invguard serve`` and ``invguard gateway hash-key``, dispatched like ``invguard.cli.main``;
and the gateway as a real process: SIGTERM stops it cleanly, SIGKILL loses no alert."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from invguard.audit import AuditLog
from invguard.cli.gateway import add_serve_parser
from invguard.errors import InvGuardError
from invguard.gateway.config import hash_api_key
from invguard.models import TrainedModel
from tests.gateway.conftest import KEYS, raw_config


def run(argv: Sequence[str]) -> int:
    """Parse and dispatch like ``invguard.cli.main`` (errors: one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="invguard")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_serve_parser(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except InvGuardError as exc:
        print(f"invguard: error: {exc}", file=sys.stderr)
        return 2
    return code


def test_hash_key_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEYS["alice"] + "\n"))
    assert run(["gateway", "hash-key", "--id", "alice"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == [{"id": "alice", "sha256": hash_api_key(KEYS["alice"])}]
    assert KEYS["alice"] not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert run(["gateway", "hash-key"]) == 2
    assert "use at least 16 random characters" in capsys.readouterr().err


def test_hash_key_generate(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["gateway", "hash-key", "--generate", "--id", "bob"]) == 0
    out = capsys.readouterr().out
    key = out.splitlines()[1].strip("# ").strip()
    assert key.startswith("igk_")
    assert len(key) > 40
    assert yaml.safe_load(out) == [{"id": "bob", "sha256": hash_api_key(key)}]


def test_init_writes_an_example_that_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from invguard.gateway.config import parse_gateway_config

    path = tmp_path / "gateway.yaml"
    assert run(["gateway", "init", str(path)]) == 0
    raw = yaml.safe_load(path.read_text())
    raw["keys"][0]["sha256"] = hash_api_key(KEYS["alice"])
    cfg = parse_gateway_config(raw).config
    assert cfg.detection.detectors.inversion.threshold == 0.3
    assert run(["gateway", "init", str(path)]) == 2
    assert "exists; use --force" in capsys.readouterr().err


def model_config(tmp_path: Path, digits_mlp: TrainedModel, **over: Any) -> Path:
    from safetensors.torch import save_file

    weights = tmp_path / "digits.safetensors"
    save_file({k: v.contiguous() for k, v in digits_mlp.model.state_dict().items()}, str(weights))
    model = {
        "type": "pytorch",
        "model": weights.name,
        "arch": "mlp",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }
    raw = raw_config(tmp_path, model=model, **over)
    raw["alerts"]["audit_log"] = "audit.db"  # relative to the config file
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_serve_check(
    tmp_path: Path, digits_mlp: TrainedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    config = model_config(tmp_path, digits_mlp)
    assert run(["serve", "--config", str(config), "--check"]) == 0
    assert "ok: PyTorch mlp from digits.safetensors, inputs [1, 8, 8], 10 classes, 3 keys" in (
        capsys.readouterr().out
    )
    config.write_text(config.read_text().replace("num_classes: 10", "num_classes: 11"))
    assert run(["serve", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "gateway.yaml: model.model: " in err
    assert "does not fit architecture 'mlp'" in err


def start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "invguard.gateway", "serve", "-c", str(config), "--port", "0"]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return proc, line.rsplit("listening on ", 1)[1].strip()
        if proc.poll() is not None:
            raise AssertionError(log.read_text(errors="replace"))
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the gateway did not start: " + log.read_text(errors="replace"))


def test_gateway_process_crash_and_restart(tmp_path: Path, digits_mlp: TrainedModel) -> None:
    """A SIGKILL right after an alert's response loses nothing: the alert is in the audit log
    and the block comes back at restart; SIGTERM stops the gateway cleanly."""
    config = model_config(
        tmp_path,
        digits_mlp,
        detection={"detectors": {"knn": {"k": 20, "threshold": 0.05}}},
    )
    mallory = {"X-API-Key": KEYS["mallory"]}
    rng = np.random.default_rng(0)
    centre = rng.uniform(0.2, 0.8, (1, 8, 8))
    proc, url = start(config, tmp_path / "first.log")
    try:
        with httpx.Client() as c:
            codes = []
            for _ in range(2):
                x = np.clip(centre + rng.normal(0, 0.01, (16, 1, 8, 8)), 0, 1).tolist()
                codes.append(
                    c.post(url + "/v1/predict", json={"inputs": x}, headers=mallory).status_code
                )
            assert codes == [200, 403]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with AuditLog(tmp_path / "audit.db", readonly=True) as audit:
        assert [e.action for e in audit.entries()] == ["gateway.start", "gateway.alert"]
    proc, url = start(config, tmp_path / "second.log")
    try:
        with httpx.Client() as c:
            blocked = c.post(url + "/v1/predict", json={"inputs": x[:1]}, headers=mallory)
            assert blocked.status_code == 403
            ok = c.post(
                url + "/v1/predict", json={"inputs": x[:1]}, headers={"X-API-Key": KEYS["bob"]}
            )
            assert ok.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with AuditLog(tmp_path / "audit.db", readonly=True) as audit:
        actions = [e.action for e in audit.entries()]
        assert actions == ["gateway.start", "gateway.alert", "gateway.start", "gateway.stop"]
        assert audit.verify().ok
    first = (tmp_path / "first.log").read_text(errors="replace")
    second = (tmp_path / "second.log").read_text(errors="replace")
    assert "alert: key 'mallory': knn score" in first
    assert "restored 1 running response(s) from the audit log" in second
    text = first + second
    for key in KEYS.values():
        assert key not in text
        assert key not in config.read_text()
