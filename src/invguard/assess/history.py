"""The history store: job results as they finish (for resume) and every run's summary (for trends).

A SQLite file. Jobs are content-addressed by their key, so an interrupted assessment started again
reuses every finished job and runs only the rest.

The file is created readable by its owner only (mode 0600: it holds reconstructions of the
training data), and no secret is stored in it: a job's spec is kept with an endpoint's URL
redacted as in the reports (no user info, query values ``***``), header values ``***`` and
secret-looking request-template fields ``***``. The job's key, computed before, still tells
jobs apart. A history written by an older version is scrubbed the same way when opened.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from invguard.assess.config import ConfigError
from invguard.assess.jobs import JobOutcome, JobSpec, pack_images
from invguard.targets.http import redact_url

REDACTED = "***"
SCHEMA_VERSION = 1  # PRAGMA user_version: 1 = stored specs are redacted
_SECRET_NAME = re.compile(
    r"(api[-_]?key|apikey|token|secret|passw(or)?d|auth|credential|signature|cookie|session)",
    re.IGNORECASE,
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        key TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        attack TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL,
        spec TEXT NOT NULL,
        record TEXT NOT NULL,
        recon BLOB,
        finished_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        config_path TEXT NOT NULL,
        config_digest TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        summary TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS run_systems (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        system TEXT NOT NULL,
        risk_score REAL,
        risk_level TEXT,
        findings TEXT NOT NULL,
        PRIMARY KEY (run_id, system)
    )""",
    """CREATE TABLE IF NOT EXISTS defense_evaluations (
        key TEXT PRIMARY KEY,
        system TEXT NOT NULL,
        record TEXT NOT NULL,
        galleries BLOB,
        finished_at TEXT NOT NULL
    )""",
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _redact_named(value: Any) -> Any:
    """``value`` with every field whose name looks secret (``api_key``, ``token``...) ``***``."""
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_NAME.search(str(k)) else _redact_named(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_named(v) for v in value]
    return value


def _redact_url(url: str) -> str:
    try:
        return redact_url(url)
    except (httpx.InvalidURL, ValueError, TypeError):  # one httpx cannot parse: not stored
        return REDACTED


def redact_system(system: dict[str, Any]) -> dict[str, Any]:
    """A system's configuration (JSON) fit to store: an endpoint target's ``url`` redacted as
    in the reports, its ``headers`` values and secret-looking ``request_template`` fields
    replaced by ``***``."""
    target = system.get("target")
    if not isinstance(target, dict):
        return system
    target = dict(target)
    if isinstance(target.get("url"), str):
        target["url"] = _redact_url(target["url"])
    if isinstance(target.get("headers"), dict):
        target["headers"] = dict.fromkeys(target["headers"], REDACTED)
    if "request_template" in target:
        target["request_template"] = _redact_named(target["request_template"])
    return {**system, "target": target}


def stored_spec(spec: JobSpec) -> str:
    """The JSON of ``spec`` as the history stores it (:func:`redact_system`)."""
    doc = asdict(spec)
    doc["system"] = redact_system(doc["system"])
    return json.dumps(doc, sort_keys=True)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (SQLite gives its -wal and -shm
    files the database's mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    config_path: str
    started_at: str
    finished_at: str | None
    status: str
    systems: dict[str, dict[str, Any]]  # system -> {"risk_score", "risk_level", "findings"}


class HistoryStore:
    """Job results and run summaries in one SQLite file (WAL; safe for one writer at a time)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA secure_delete=ON")  # replaced rows leave no trace
            for stmt in _SCHEMA:
                self._db.execute(stmt)
            self._db.commit()
            self._scrub_old_specs()
        except OSError as exc:
            raise ConfigError(
                f"history database {self.path} cannot be created: {exc.strerror or exc}"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"history database {self.path} is not usable: {exc}") from exc

    def _scrub_old_specs(self) -> None:
        """Redact the specs an older version stored in clear (once: the schema version says)."""
        if int(self._db.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION:
            return
        with self._db:
            for key, text in self._db.execute("SELECT key, spec FROM jobs").fetchall():
                try:
                    doc = json.loads(text)
                except ValueError:
                    doc = None
                if not isinstance(doc, dict) or not isinstance(doc.get("system"), dict):
                    scrubbed = "{}"
                else:
                    doc["system"] = redact_system(doc["system"])
                    scrubbed = json.dumps(doc, sort_keys=True)
                if scrubbed != text:
                    self._db.execute("UPDATE jobs SET spec = ? WHERE key = ?", (scrubbed, key))
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # jobs ------------------------------------------------------------------------------------

    def finished_job(self, key: str) -> JobOutcome | None:
        """A previously finished, successful job with this key, or None."""
        row = self._db.execute(
            "SELECT record, recon FROM jobs WHERE key = ? AND status = 'ok'", (key,)
        ).fetchone()
        if row is None:
            return None
        return JobOutcome.from_record(json.loads(row[0]), row[1])

    def save_job(self, spec: JobSpec, outcome: JobOutcome) -> None:
        """Store a job's outcome at once (committed), so an interruption loses nothing finished."""
        recon = (
            pack_images(outcome.reconstructions) if outcome.reconstructions is not None else None
        )
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    outcome.key,
                    outcome.system_id,
                    outcome.attack,
                    outcome.seed,
                    outcome.status,
                    stored_spec(spec),
                    json.dumps(outcome.record(), sort_keys=True),
                    recon,
                    _now(),
                ),
            )

    def count_jobs(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'ok'").fetchone()[0])

    # defence evaluations ---------------------------------------------------------------------

    def finished_defense_evaluation(
        self, key: str
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """A stored defence evaluation (its record and per-row galleries) with this key, or None."""
        row = self._db.execute(
            "SELECT record, galleries FROM defense_evaluations WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        galleries: dict[str, np.ndarray] = {}
        if row[1]:
            with np.load(io.BytesIO(row[1]), allow_pickle=False) as npz:
                galleries = {k: npz[k].astype(np.float32) for k in npz.files}
        return json.loads(row[0]), galleries

    def save_defense_evaluation(
        self, key: str, system: str, record: dict[str, Any], galleries: dict[str, np.ndarray]
    ) -> None:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {k: v.astype(np.float16) for k, v in galleries.items()}
        np.savez_compressed(buf, **arrays)
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO defense_evaluations VALUES (?, ?, ?, ?, ?)",
                (key, system, json.dumps(record, sort_keys=True), buf.getvalue(), _now()),
            )

    # runs ------------------------------------------------------------------------------------

    def start_run(self, name: str, config_path: str, digest: str) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO runs (name, config_path, config_digest, started_at, status) "
                "VALUES (?, ?, ?, ?, 'running')",
                (name, config_path, digest, _now()),
            )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def finish_run(
        self, run_id: int, summary: dict[str, Any], systems: dict[str, dict[str, Any]]
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                (
                    _now(),
                    summary.get("status", "complete"),
                    json.dumps(summary, sort_keys=True),
                    run_id,
                ),
            )
            for system, data in systems.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO run_systems VALUES (?, ?, ?, ?, ?)",
                    (
                        run_id,
                        system,
                        data.get("risk_score"),
                        data.get("risk_level"),
                        json.dumps(data.get("findings", {}), sort_keys=True),
                    ),
                )

    def runs(self, *, system: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Finished runs, newest first."""
        rows = self._db.execute(
            "SELECT id, name, config_path, started_at, finished_at, status FROM runs "
            "WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for r in rows:
            sys_rows = self._db.execute(
                "SELECT system, risk_score, risk_level, findings FROM run_systems WHERE run_id = ?",
                (r[0],),
            ).fetchall()
            systems = {
                s[0]: {"risk_score": s[1], "risk_level": s[2], "findings": json.loads(s[3])}
                for s in sys_rows
                if system is None or s[0] == system
            }
            if system is not None and not systems:
                continue
            out.append(RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], systems))
        return out

    def previous_risk(self, system: str, before_run: int) -> tuple[int, float] | None:
        """The latest finished run before ``before_run`` that scored ``system``: (run id, risk)."""
        row = self._db.execute(
            "SELECT rs.run_id, rs.risk_score FROM run_systems rs JOIN runs r ON r.id = rs.run_id "
            "WHERE rs.system = ? AND rs.run_id < ? AND r.finished_at IS NOT NULL "
            "AND rs.risk_score IS NOT NULL ORDER BY rs.run_id DESC LIMIT 1",
            (system, before_run),
        ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    def risk_history(
        self, config_path: str, system: str, *, limit: int = 50
    ) -> list[tuple[int, str, float]]:
        """(run id, finished at, risk score) of the latest ``limit`` finished runs of the
        configuration file ``config_path`` that scored ``system``, oldest first (for the trend)."""
        rows = self._db.execute(
            "SELECT rs.run_id, r.finished_at, rs.risk_score FROM run_systems rs "
            "JOIN runs r ON r.id = rs.run_id WHERE r.config_path = ? AND rs.system = ? "
            "AND r.finished_at IS NOT NULL AND rs.risk_score IS NOT NULL "
            "ORDER BY rs.run_id DESC LIMIT ?",
            (config_path, system, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1]), float(r[2])) for r in reversed(rows)]
