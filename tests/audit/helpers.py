"""Shared helpers of the audit log tests: building logs, raw SQL tampering, file fingerprints."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invguard.audit.log import _SCHEMA, AuditLog, Record, canonical_entry_bytes
from invguard.audit.merkle import TreeEdge, leaf_hash
from invguard.audit.tree import NODES_TRIGGER

T0 = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)


def fake_clock(
    start: datetime = T0, step: timedelta = timedelta(seconds=1)
) -> Callable[[], datetime]:
    """A clock that advances ``step`` per call, for reproducible timestamps."""
    ticks: Iterator[int] = iter(range(1 << 40))
    return lambda: start + next(ticks) * step


def record(i: int) -> Record:
    action = ("assessment.finished", "finding.recorded", "defence.applied")[i % 3]
    return (f"user-{i % 2}", action, f"model-{i}", {"n": i, "score": i / 8, "note": "ok"})


def build_log(path: Path, n: int, *, clock: Callable[[], datetime] | None = None) -> Path:
    """A closed log of ``n`` entries made with :func:`record` (entry seq i+1 is record(i))."""
    with AuditLog(path, clock=clock or fake_clock()) as log:
        for i in range(n):
            log.append(*record(i))
    return path


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def side_files(path: Path) -> list[str]:
    """The -wal / -shm / -journal files next to a database."""
    return sorted(p.name for p in path.parent.glob(path.name + "-*"))


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, as an administrator with the file would use."""
    return sqlite3.connect(path, isolation_level=None)


TRIGGERS = ("entries_no_update", "entries_no_delete", "entries_extend_chain", NODES_TRIGGER)


def tamper(path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Drop the append-only triggers, run ``statements``, then put the triggers back."""
    conn = raw(path)
    try:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in statements:
            conn.execute(statement, params if "?" in statement else ())
        for statement in _SCHEMA:
            conn.execute(statement)
    finally:
        conn.close()


def forge_entry_bytes(
    seq: int, ts: str, actor: str, action: str, subject: str, payload: str, prev: bytes
) -> tuple[object, ...]:
    """A row whose leaf hash is right for its contents (whatever its prev hash)."""
    lh = leaf_hash(canonical_entry_bytes(seq, ts, actor, action, subject, payload, prev))
    return (seq, ts, actor, action, subject, payload, prev, lh)


def rebuild_tree(conn: sqlite3.Connection) -> None:
    """Recompute every stored tree hash from the stored leaf hashes, as an attacker who
    rewrote entries would (the triggers must be dropped)."""
    builder = TreeEdge()
    rows = conn.execute("SELECT seq, leaf_hash FROM entries ORDER BY seq").fetchall()
    for seq, leaf in rows:
        made = builder.push(bytes(leaf))
        conn.execute(
            "UPDATE entries SET nodes = ? WHERE seq = ?", (b"".join(made) if made else None, seq)
        )


def rewrite_consistently(path: Path, seq: int, payload: str) -> None:
    """The strongest attack on the file alone: change entry ``seq`` and recompute every leaf
    hash and link after it, and the stored tree, so that the file is self-consistent again
    (only a checkpoint catches it)."""
    conn = raw(path)
    try:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER {trigger}")
        rows = conn.execute(
            "SELECT seq, timestamp, actor, action, subject, payload, prev_hash FROM entries "
            "ORDER BY seq"
        ).fetchall()
        prev = bytes(32)
        conn.execute("BEGIN")
        for s, ts, actor, action, subject, text, _ in rows:
            text = payload if s == seq else text
            row = forge_entry_bytes(s, ts, actor, action, subject, text, prev)
            conn.execute(
                "UPDATE entries SET payload = ?, prev_hash = ?, leaf_hash = ? WHERE seq = ?",
                (text, row[6], row[7], s),
            )
            prev = row[7]  # type: ignore[assignment]
        rebuild_tree(conn)
        conn.execute("COMMIT")
        for statement in _SCHEMA:
            conn.execute(statement)
    finally:
        conn.close()


# Tamper scenarios on a 30-entry log: (name, function, expected seq, expected message part).
def _payload_byte(path: Path) -> None:
    tamper(
        path, "UPDATE entries SET payload = replace(payload, '\"n\":16', '\"n\":17') WHERE seq = 17"
    )


def _delete(path: Path) -> None:
    tamper(path, "DELETE FROM entries WHERE seq = 18")


def _swap(path: Path) -> None:
    tamper(
        path,
        "UPDATE entries SET seq = 1000 WHERE seq = 5",
        "UPDATE entries SET seq = 5 WHERE seq = 6",
        "UPDATE entries SET seq = 6 WHERE seq = 1000",
    )


def _forged_append(path: Path) -> None:
    row = forge_entry_bytes(
        31,
        "2025-01-31T13:00:00.000000Z",
        "mallory",
        "defence.applied",
        "model-x",
        "{}",
        b"\x42" * 32,
    )
    tamper(path, "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,NULL)", params=row)


SCENARIOS: list[tuple[str, Callable[[Path], None], int, str]] = [
    ("payload-byte", _payload_byte, 17, "entry 17: stored leaf hash does not match its contents"),
    ("delete", _delete, 19, "entry 19: previous-hash link broken (entry missing or reordered"),
    ("swap", _swap, 5, "entry 5: stored leaf hash does not match its contents"),
    ("forged-prev-hash", _forged_append, 31, "entry 31: previous-hash link broken"),
]


# ---------------------------------------------------------------------------------------------
# the previous format (no stored tree hashes) and an older writer


OLD_NO_UPDATE_TRIGGER = """CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE of entries refused'); END"""


def to_previous_format(path: Path) -> None:
    """Turn a log into what the previous release wrote: no ``nodes`` column, its triggers."""
    conn = raw(path)
    try:
        conn.execute(f"DROP TRIGGER {NODES_TRIGGER}")
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("ALTER TABLE entries DROP COLUMN nodes")
        conn.execute(OLD_NO_UPDATE_TRIGGER)
        conn.execute("VACUUM")
    finally:
        conn.close()


def older_writer_append(path: Path, records: list[Record], start: datetime = T0) -> None:
    """Append as the previous release did (chained rows, no tree hashes), e.g. an older
    InvGuard writing to the same file."""
    conn = raw(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        seq, prev = conn.execute(
            "SELECT seq, leaf_hash FROM entries ORDER BY seq DESC LIMIT 1"
        ).fetchone() or (0, bytes(32))
        for i, (actor, action, subject, payload) in enumerate(records):
            seq += 1
            ts = (start + timedelta(hours=1, seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            text = json.dumps(payload or {}, sort_keys=True, separators=(",", ":"))
            row = forge_entry_bytes(seq, ts, actor, action, subject, text, bytes(prev))
            conn.execute(
                "INSERT INTO entries (seq, timestamp, actor, action, subject, payload, "
                "prev_hash, leaf_hash) VALUES (?,?,?,?,?,?,?,?)",
                row,
            )
            prev = row[7]
        conn.execute("COMMIT")
    finally:
        conn.close()
