"""The SQLite audit log through the library: entries, canonical form, triggers, proofs, tampering."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invguard.audit import (
    AuditError,
    AuditLog,
    Signer,
    mth,
    parse_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from invguard.audit.checkpoint import Checkpoint, sign
from invguard.audit.log import GENESIS_HASH, canonical_entry_bytes, canonical_json, parse_time
from invguard.audit.merkle import leaf_hash
from tests.audit.helpers import (
    SCENARIOS,
    T0,
    build_log,
    fake_clock,
    file_digest,
    raw,
    record,
    rewrite_consistently,
    side_files,
    tamper,
)


@pytest.fixture
def log30(tmp_path: Path) -> Path:
    return build_log(tmp_path / "audit.db", 30)


def test_append_builds_a_chain_and_merkle_tree(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", clock=fake_clock()) as log:
        entries = [log.append(*record(i)) for i in range(10)]
        assert [e.seq for e in entries] == list(range(1, 11))
        assert entries[0].prev_hash == GENESIS_HASH
        for a, b in itertools.pairwise(entries):
            assert b.prev_hash == a.leaf_hash
        for e in entries:
            assert e.leaf_hash == leaf_hash(e.canonical_bytes())
        assert entries[0].timestamp == "2025-01-31T12:00:00.000000Z"
        assert log.size() == 10
        assert log.root() == mth([e.canonical_bytes() for e in entries])
        assert log.root(4) == mth([e.canonical_bytes() for e in entries[:4]])
        assert log.entries() == entries
        assert log.entry(3) == entries[2]
        report = log.verify()
    assert report.ok
    assert report.size == 10
    assert report.problems == ()
    assert report.root == mth([e.canonical_bytes() for e in entries])


def test_canonical_bytes_definition() -> None:
    data = canonical_entry_bytes(
        7,
        "2025-01-31T12:00:00.000000Z",
        "alice",
        "finding.recorded",
        "m",
        '{"a":[1,2]}',
        b"\x01" * 32,
    )
    assert data == (
        b'{"action":"finding.recorded","actor":"alice","payload":{"a":[1,2]},"prev_hash":"'
        + b"01" * 32
        + b'","seq":7,"subject":"m","timestamp":"2025-01-31T12:00:00.000000Z"}'
    )


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(seq=st.integers(1, 10**12), actor=_text, action=_text, subject=_text, payload=_json)
def test_canonical_bytes_equal_sorted_compact_json(
    seq: int, actor: str, action: str, subject: str, payload: object
) -> None:
    """The fast field-by-field writer equals the definition: json with sorted keys, UTF-8."""
    prev = bytes(range(32))
    doc = {
        "seq": seq,
        "timestamp": "2025-01-31T12:00:00.000000Z",
        "actor": actor,
        "action": action,
        "subject": subject,
        "payload": payload,
        "prev_hash": prev.hex(),
    }
    expected = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text = canonical_json(payload)
    got = canonical_entry_bytes(seq, doc["timestamp"], actor, action, subject, text, prev)  # type: ignore[arg-type]
    assert got == expected
    assert canonical_json(json.loads(text)) == text  # stable round trip, as verify relies on


def test_append_many_equals_single_appends(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "one.db", clock=fake_clock()) as one:
        singles = [one.append(*record(i)) for i in range(25)]
    with AuditLog(tmp_path / "many.db", clock=fake_clock()) as many:
        batch = many.append_many(record(i) for i in range(10))
        batch += many.append_many(record(i) for i in range(10, 25))
        assert many.append_many([]) == []
        assert many.verify().ok
    assert batch == singles


def test_filters(tmp_path: Path) -> None:
    clock = fake_clock(step=timedelta(hours=1))
    build_log(tmp_path / "a.db", 12, clock=clock)
    with AuditLog(tmp_path / "a.db", readonly=True) as log:
        assert [e.seq for e in log.entries(action="defence.applied")] == [3, 6, 9, 12]
        assert [e.seq for e in log.entries(actor="user-0", action="finding.recorded")] == [5, 11]
        since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=5)
        assert [e.seq for e in log.entries(since=since, until=until)] == [3, 4, 5]
        assert [e.seq for e in log.entries(since=parse_time("2025-01-31T14:00:00+02:00"))] == [
            1,
            2,
            *range(3, 13),
        ]
        assert [e.seq for e in log.entries(limit=2)] == [1, 2]
        assert log.entries(subject="model-4")[0].payload == {"n": 4, "note": "ok", "score": 0.5}
        assert log.entries(action="nothing") == []


def test_parse_time() -> None:
    assert parse_time("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_time("2025-01-31T12:00:00Z") == T0
    with pytest.raises(AuditError, match="RFC 3339"):
        parse_time("yesterday")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "a", "s", None), "actor must not be empty"),
        (("a", "", "s", None), "action must not be empty"),
        (("a", "b", 3, None), "subject must be a string"),
        (("a", "b", "s", {"x": float("nan")}), "not JSON-serialisable"),
        (("a", "b", "s", {"x": {1, 2}}), "not JSON-serialisable"),
        (("a\ud800", "b", "s", None), "lone surrogate"),
        (("a", "b", "s", {"x": "\ud800"}), "not JSON-serialisable"),
        (("a", "b", "s", "x" * (1 << 20)), "larger than"),
        (("a" * 5000, "b", "s", None), "longer than"),
    ],
)
def test_bad_appends_are_refused(tmp_path: Path, args: tuple[object, ...], message: str) -> None:
    with AuditLog(tmp_path / "a.db") as log:
        with pytest.raises(AuditError, match=message):
            log.append(*args)  # type: ignore[arg-type]
        assert log.size() == 0


def test_triggers_refuse_update_delete_and_bad_inserts(log30: Path) -> None:
    conn = raw(log30)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE"):
            conn.execute("UPDATE entries SET payload = '{}' WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
            conn.execute("DELETE FROM entries WHERE seq = 30")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
            conn.execute("DELETE FROM entries")
        last = conn.execute("SELECT leaf_hash FROM entries WHERE seq = 30").fetchone()[0]
        for seq, prev in ((32, last), (31, b"\x00" * 32), (30, last)):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(
                    "INSERT INTO entries VALUES (?, 't', 'a', 'b', 'c', '{}', ?, ?, NULL)",
                    (seq, prev, b"\x01" * 32),
                )
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE"):
            conn.execute("UPDATE entries SET leaf_hash = prev_hash WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="tree hashes are written once"):
            conn.execute("UPDATE entries SET nodes = NULL WHERE seq = 4")
        with pytest.raises(sqlite3.IntegrityError, match="tree hashes are written once"):
            conn.execute("UPDATE entries SET nodes = leaf_hash WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="metadata is read-only"):
            conn.execute("UPDATE audit_meta SET value = 'x'")
    finally:
        conn.close()
    with AuditLog(log30, readonly=True) as log:
        assert log.verify().ok


def test_readonly_log_never_writes(log30: Path) -> None:
    before = file_digest(log30)
    assert side_files(log30) == []
    with AuditLog(log30, readonly=True) as log:
        assert log.verify().ok
        assert log.size() == 30
        with pytest.raises(AuditError, match="read-only"):
            log.append("a", "b", "c")
    assert file_digest(log30) == before
    assert side_files(log30) == []


def test_readonly_handle_sees_a_concurrent_writer(log30: Path) -> None:
    with AuditLog(log30, readonly=True) as reader:
        assert reader.size() == 30
        with AuditLog(log30) as writer:
            writer.append("late", "finding.recorded", "m")
            assert reader.size() == 31
            assert reader.verify().ok


def test_read_is_retried_when_the_file_changes_during_it(
    log30: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SCENARIOS[0][1](log30)  # one tampered entry
    before = file_digest(log30)
    with AuditLog(log30, readonly=True) as log:
        assert log._immutable
        real = log._fingerprint
        calls = iter(range(100))

        def changing() -> tuple[object, ...]:  # the file "changes" after the first scan starts
            return real() if next(calls) == 0 else (*real(), "changed")

        monkeypatch.setattr(log, "_fingerprint", changing)
        report = log.verify()
        assert not log._immutable  # fell back to a normal read-only connection
    assert report.problem_count == 1  # the first, discarded scan did not count twice
    assert file_digest(log30) == before


def test_proofs(log30: Path) -> None:
    with AuditLog(log30, readonly=True) as log:
        root30 = log.root()
        for seq in (1, 17, 30):
            p = log.inclusion_proof(seq)
            assert p.verify()
            assert p.root == root30
            assert p.tree_size == 30
            assert verify_inclusion(seq - 1, 30, p.leaf_hash, p.path, root30)
        p = log.inclusion_proof(5, 8)
        assert p.root == log.root(8)
        assert p.verify()
        c = log.consistency_proof(11, 30)
        assert c.verify()
        assert c.old_root == log.root(11)
        assert c.new_root == root30
        assert verify_consistency(11, 30, c.old_root, c.new_root, c.path)
        assert log.consistency_proof(0).verify()
        assert log.consistency_proof(30).verify()
        for seq in (31, 0):
            with pytest.raises(AuditError, match="is not in a tree of size 30"):
                log.inclusion_proof(seq)
        with pytest.raises(AuditError, match="larger than the log"):
            log.inclusion_proof(3, 31)
        with pytest.raises(AuditError, match="larger than the log"):
            log.consistency_proof(3, 31)
        with pytest.raises(AuditError, match="between 0 and 30"):
            log.consistency_proof(31)


def test_checkpoint_round_trip(log30: Path) -> None:
    signer = Signer.generate("example.com/audit")
    with AuditLog(log30, readonly=True) as log:
        signed = parse_checkpoint(log.checkpoint(signer))
        assert signed.checkpoint.origin == "example.com/audit"
        assert signed.checkpoint.size == 30
        assert signed.checkpoint.root == log.root()
        report = log.verify(signed, signer.verifier)
        assert report.ok
        assert report.checkpoint == signed.checkpoint
        with pytest.raises(AuditError, match="go together"):
            log.verify(signed)
    with AuditLog(log30) as log:
        log.append("later", "finding.recorded", "m")
        assert log.verify(signed, signer.verifier).ok  # a grown log still contains the checkpoint


# ---------------------------------------------------------------------------------------------
# tampering


@pytest.mark.parametrize(
    ("attack", "seq", "message"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_tampering_is_detected_and_named(
    log30: Path, attack: Callable[[Path], None], seq: int, message: str
) -> None:
    attack(log30)
    with AuditLog(log30, readonly=True) as log:
        report = log.verify()
    assert not report.ok
    first = report.first_problem
    assert first is not None
    assert first.seq == seq
    assert first.message.startswith(message), first.message


def test_dropped_triggers_are_reported(log30: Path) -> None:
    conn = raw(log30)
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.close()
    with AuditLog(log30, readonly=True) as log:
        report = log.verify()
    assert not report.ok
    assert report.problem_count == 1
    assert report.problems[0].kind == "schema"
    assert "entries_no_delete" in report.problems[0].message


def test_non_canonical_payload_is_reported(log30: Path) -> None:
    tamper(log30, "UPDATE entries SET payload = replace(payload, ',', ', ') WHERE seq = 4")
    with AuditLog(log30, readonly=True) as log:
        first = log.verify().first_problem
    assert first is not None
    assert first.message == "entry 4: stored leaf hash does not match its contents"


def test_rehashed_non_canonical_payload_is_reported(log30: Path) -> None:
    """Same meaning, other bytes, hashes recomputed: still not the canonical form."""
    rewrite_consistently(log30, 4, '{"n": 3, "note": "ok", "score": 0.375}')
    with AuditLog(log30, readonly=True) as log:
        report = log.verify()
    assert report.problem_count == 1
    assert report.problems[0].message == (
        "entry 4: payload is not in canonical JSON form (edited outside InvGuard)"
    )


def test_malformed_rows_are_reported(log30: Path) -> None:
    conn = raw(log30)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET leaf_hash = 'text' WHERE seq = 9")
    conn.close()
    with AuditLog(log30, readonly=True) as log:
        report = log.verify()
    assert report.first_problem is not None
    assert report.first_problem.message.startswith("entry 9: malformed row (leaf_hash column)")


def test_first_entry_deleted(log30: Path) -> None:
    tamper(log30, "DELETE FROM entries WHERE seq = 1")
    with AuditLog(log30, readonly=True) as log:
        first = log.verify().first_problem
    assert first is not None
    assert first.seq == 2
    assert "previous-hash link broken" in first.message
    assert "expected entry 1" in first.message


def test_consistent_rewrite_is_caught_only_by_a_checkpoint(log30: Path) -> None:
    signer = Signer.generate("example.com/audit")
    with AuditLog(log30, readonly=True) as log:
        signed = parse_checkpoint(log.checkpoint(signer))
    rewrite_consistently(log30, 12, '{"n":11,"note":"nothing to see","score":1.375}')
    with AuditLog(log30, readonly=True) as log:
        assert log.verify().ok  # the file alone is self-consistent again
        report = log.verify(signed, signer.verifier)
        assert log.entry(12).payload["note"] == "nothing to see"
    assert not report.ok
    assert report.problems[0].message.startswith("checkpoint root does not match the log")


def test_tail_truncation_is_caught_by_a_checkpoint(log30: Path) -> None:
    signer = Signer.generate("example.com/audit")
    with AuditLog(log30, readonly=True) as log:
        signed = parse_checkpoint(log.checkpoint(signer))
    tamper(log30, "DELETE FROM entries WHERE seq > 28")
    with AuditLog(log30, readonly=True) as log:
        assert log.verify().ok  # a chain cannot tell that its end is missing
        report = log.verify(signed, signer.verifier)
    assert report.problems[0].message == (
        "log has 28 entries but the checkpoint commits to 30: entries were removed"
    )


def test_checkpoint_of_a_different_key_or_forged(log30: Path) -> None:
    signer, other = Signer.generate("example.com/audit"), Signer.generate("example.com/audit")
    with AuditLog(log30, readonly=True) as log:
        forged = sign(Checkpoint("example.com/audit", 30, bytes(32)), other)
        report = log.verify(parse_checkpoint(forged), signer.verifier)
        assert report.problems[0].message.startswith("checkpoint signed by a different key")
        report = log.verify(parse_checkpoint(forged), other.verifier)
        assert report.problems[0].message.startswith("checkpoint root does not match the log")


def test_checkpoint_refused_for_a_tampered_log(log30: Path) -> None:
    SCENARIOS[0][1](log30)
    with (
        AuditLog(log30, readonly=True) as log,
        pytest.raises(AuditError, match=r"refusing to sign.*entry 17"),
    ):
        log.checkpoint(Signer.generate("k"))


# ---------------------------------------------------------------------------------------------
# opening


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="does not exist"):
        AuditLog(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(AuditError, match=r"folder .* does not exist"):
        AuditLog(tmp_path / "no" / "a.db")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    for readonly in (True, False):
        with pytest.raises(AuditError, match="not a readable audit database"):
            AuditLog(tmp_path / "junk.db", readonly=readonly)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(AuditError, match="not an InvGuard audit log"):
        AuditLog(tmp_path / "other.db", readonly=True)
    with pytest.raises(AuditError, match="not an InvGuard audit log"):
        AuditLog(tmp_path / "other.db")
    with pytest.raises(AuditError, match="not a regular file"):
        AuditLog(tmp_path, readonly=True)


def test_writer_uses_wal_and_chosen_sync(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", synchronous="FULL") as log:
        log.append("a", "b", "c")
        assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with AuditLog(tmp_path / "a.db") as log:
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with pytest.raises(AuditError, match="synchronous"):
        AuditLog(tmp_path / "a.db", synchronous="OFF")  # type: ignore[arg-type]
