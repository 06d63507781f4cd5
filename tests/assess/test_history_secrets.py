"""Secrets at rest: an assessment of an endpoint whose URL carries credentials (user info, an
``api_key`` query) and whose headers carry a literal key leaves none of them in the history or
audit database (every byte of the SQLite files is searched), and both files are mode 0600. The
job keys still tell jobs apart: a second run reuses the finished job."""

from __future__ import annotations

import json
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from invguard.assess.history import HistoryStore
from invguard.data import ImageDataset
from invguard.models import ModelCache, TrainedModel
from tests._servers import serve_model
from tests.cli._cli import run_cli

USER = "u-alice-7c1e"
PASSWORD = "pw-9f8e7d6c5b4a"
QUERY_KEY = "qk-SECRET-31415926"
HEADER_KEY = "hk-5e2d1c0b9a87"
TEMPLATE_TOKEN = "tt-27182818-token"
SECRETS = (USER, PASSWORD, QUERY_KEY, HEADER_KEY, TEMPLATE_TOKEN)
pytestmark = pytest.mark.slow

QUERIES = 240  # attack queries per job


def _files(db: Path) -> list[Path]:
    """The database and any -wal/-journal beside it."""
    return [
        p for p in (db, *(db.with_name(db.name + s) for s in ("-wal", "-journal"))) if p.exists()
    ]


def _assert_private_and_clean(db: Path) -> None:
    assert stat.S_IMODE(db.stat().st_mode) == 0o600, oct(db.stat().st_mode)
    for f in _files(db):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        blob = f.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} found in {f.name}"


def _config(tmp_path: Path, url: str, cache: Path) -> Path:
    base, path = url.split("://", 1)[1].split("/", 1)
    system = {
        "id": "api",
        "target": {
            "type": "http",
            "url": f"http://{USER}:{PASSWORD}@{base}/{path}?api_key={QUERY_KEY}&v=2",
            "headers": {"X-Api-Key": HEADER_KEY, "Authorization": f"Bearer {HEADER_KEY}"},
            "request_template": {"inputs": "$inputs", "auth_token": TEMPLATE_TOKEN},
            "retries": 0,
            "probe_burst": 5,
        },
        "data": {"builtin": "digits"},
        "attacks": [{"name": "auto", "classes": [0, 1], "budget": {"queries": QUERIES}}],
    }
    cfg = {
        "name": "secrets at rest",
        "fail_on": "none",
        "cache_dir": str(cache),
        "history_db": "history.db",
        "audit_db": "audit.db",
        "systems": [system],
    }
    p = tmp_path / "invguard.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def test_no_secret_reaches_the_history_or_the_audit_log(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    digits: ImageDataset,
    digits_mlp: TrainedModel,
    model_cache: ModelCache,
) -> None:
    with serve_model(digits_mlp.model, input_shape=digits.image_shape, num_classes=10) as srv:
        config = _config(tmp_path, srv.url, model_cache.root)
        code, _, err = run_cli(["assess", "-c", str(config), "--quiet"], capsys)
        assert code == 0, err
        first = srv.stats.served_inputs
        code, _, err = run_cli(["assess", "-c", str(config), "--quiet"], capsys)
        assert code == 0, err
        again = srv.stats.served_inputs - first
    assert first > QUERIES // 2  # the attack ran through the endpoint
    assert again < first - QUERIES // 2  # ... once: the second run reused the finished job

    history, audit = tmp_path / "history.db", tmp_path / "audit.db"
    _assert_private_and_clean(history)
    _assert_private_and_clean(audit)
    with closing(sqlite3.connect(history)) as db:
        specs = [json.loads(r[0]) for r in db.execute("SELECT spec FROM jobs")]
    assert len(specs) == 1  # one job, stored once
    target = specs[0]["system"]["target"]
    assert target["url"] == f"{srv.url}?api_key=***&v=***"
    assert target["headers"] == {"X-Api-Key": "***", "Authorization": "***"}
    assert target["request_template"] == {"inputs": "$inputs", "auth_token": "***"}
    for secret in SECRETS:  # ... and the reports show none either
        for report in (p for p in (tmp_path / "invguard-assessment").rglob("*") if p.is_file()):
            assert secret not in report.read_text(encoding="utf-8", errors="replace"), report


def test_an_old_history_is_scrubbed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with HistoryStore(path):
        pass
    spec = {
        "key": "k1",
        "system": {
            "id": "api",
            "target": {
                "type": "http",
                "url": f"https://{USER}:{PASSWORD}@host.example/p?api_key={QUERY_KEY}",
                "headers": {"X-Api-Key": HEADER_KEY},
            },
        },
    }
    with closing(sqlite3.connect(path)) as db:  # a row as older versions wrote it, in clear
        db.execute("PRAGMA user_version = 0")
        db.execute(
            "INSERT INTO jobs VALUES ('k1', 'api', 'miface-zo', 0, 'ok', ?, '{}', NULL, 'now')",
            (json.dumps(spec),),
        )
        db.commit()
    assert PASSWORD.encode() in b"".join(f.read_bytes() for f in _files(path))
    with HistoryStore(path):
        pass
    with closing(sqlite3.connect(path)) as db:
        stored = json.loads(db.execute("SELECT spec FROM jobs").fetchone()[0])
    assert stored["system"]["target"]["url"] == "https://host.example/p?api_key=***"
    assert stored["key"] == "k1"  # the key (what a resumed run looks up) is kept
    blob = b"".join(f.read_bytes() for f in _files(path))
    for secret in (USER, PASSWORD, QUERY_KEY, HEADER_KEY):
        assert secret.encode() not in blob, secret  # overwritten, not just unlinked
