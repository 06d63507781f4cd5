"""The stored RFC 6962 subtree hashes: proofs from O(log n) stored hashes, byte-identical to the
recomputed RFC 6962 proofs; the previous format (no stored hashes) verifies and migrates; an older
writer's rows are filled in; tampering with the stored hashes is reported."""

from __future__ import annotations

import math
import random
import sqlite3
import stat
from pathlib import Path

import pytest

from invguard.audit import AuditLog, Signer, parse_checkpoint, tree
from invguard.audit.errors import AuditError
from invguard.audit.merkle import (
    Node,
    TreeEdge,
    consistency_path,
    consistency_ranges,
    fold_nodes,
    inclusion_path,
    inclusion_ranges,
    leaf_hash,
    perfect_nodes,
    root_from_leaf_hashes,
    tree_levels,
    verify_inclusion,
)
from invguard.errors import InvalidParameterError
from tests.audit.helpers import (
    build_log,
    fake_clock,
    file_digest,
    older_writer_append,
    raw,
    record,
    side_files,
    tamper,
    to_previous_format,
)

HASHES = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]


# ---------------------------------------------------------------------------------------------
# the pure parts


def test_tree_edge_matches_the_level_by_level_tree() -> None:
    """Leaf k completes nodes (l, ((k + 1) >> l) - 1), whose hashes are those of the levels."""
    levels = list(tree_levels(HASHES))
    edge = TreeEdge()
    for k, leaf in enumerate(HASHES):
        made = edge.push(leaf)
        assert len(made) == tree.completed_levels(k + 1)
        for level, value in enumerate(made, start=1):
            assert value == levels[level - 1][((k + 1) >> level) - 1], (k, level)
        assert edge.root() == root_from_leaf_hashes(HASHES[: k + 1]), k
    assert TreeEdge().root() == root_from_leaf_hashes([])
    with pytest.raises(InvalidParameterError, match="unknown"):
        TreeEdge(7).push(HASHES[0])  # an edge taken over without a way to fetch its nodes


def test_ranges_hash_to_the_recomputed_proofs_up_to_64() -> None:
    levels = list(tree_levels(HASHES[:64]))
    stored: dict[Node, bytes] = {(0, i): h for i, h in enumerate(HASHES[:64])}
    stored |= {(lv, i): h for lv, hs in enumerate(levels, start=1) for i, h in enumerate(hs)}
    for n in range(1, 65):
        for i in range(n):
            path = [fold_nodes(perfect_nodes(lo, hi), stored) for lo, hi in inclusion_ranges(i, n)]
            assert path == inclusion_path(i, HASHES[:n]), (i, n)
        for m in range(n + 1):
            path = [
                fold_nodes(perfect_nodes(lo, hi), stored) for lo, hi in consistency_ranges(m, n)
            ]
            assert path == consistency_path(m, HASHES[:n]), (m, n)
    with pytest.raises(InvalidParameterError, match="not a subtree"):
        perfect_nodes(1, 3)
    with pytest.raises(InvalidParameterError, match="lo < hi"):
        perfect_nodes(4, 4)


# ---------------------------------------------------------------------------------------------
# proofs from the stored hashes


def _grow(path: Path, n: int, rng: random.Random) -> None:
    """Append ``n`` entries in a mix of single appends and batches, through fresh handles."""
    i = 0
    while i < n:
        with AuditLog(path, clock=fake_clock()) as log:
            for _ in range(rng.randint(1, 6)):
                k = min(n - i, rng.choice((1, 1, 2, 3, 7, 16)))
                if k == 1:
                    log.append(*record(i))
                else:
                    log.append_many([record(j) for j in range(i, i + k)])
                i += k
                if i >= n:
                    break


def test_stored_proofs_equal_the_recomputed_proofs(tmp_path: Path) -> None:
    rng = random.Random(6962)
    path = tmp_path / "audit.db"
    _grow(path, 300, rng)
    with AuditLog(path, readonly=True) as log:
        hashes = log._leaf_hashes(None)
        assert len(hashes) == 300
        for n in range(1, 301):
            assert log.root(n) == root_from_leaf_hashes(hashes[:n]), n
            seqs = range(1, n + 1) if n <= 40 else rng.sample(range(1, n + 1), 4)
            for seq in seqs:
                p = log.inclusion_proof(seq, n)
                assert list(p.path) == inclusion_path(seq - 1, hashes[:n]), (seq, n)
                assert p.root == root_from_leaf_hashes(hashes[:n])
                assert p.leaf_hash == hashes[seq - 1]
            olds = range(n + 1) if n <= 40 else [0, n, *rng.sample(range(1, n), 4)]
            for m in olds:
                c = log.consistency_proof(m, n)
                assert list(c.path) == consistency_path(m, hashes[:n]), (m, n)
                assert c.old_root == root_from_leaf_hashes(hashes[:m])
                assert c.new_root == root_from_leaf_hashes(hashes[:n])
        for seq, n, m in ((1, 1, 0), (17, 300, 17), (300, 300, 299), (128, 256, 128)):
            assert log.inclusion_proof(seq, n) == log._recomputed_inclusion_proof(seq, n)
            assert log.consistency_proof(m, n) == log._recomputed_consistency_proof(m, n)
        assert log.verify().ok


class NodeReads:
    """Counts the stored hashes read (wraps ``tree.read_node``) and forbids the O(n) path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = tree.read_node

        def counting(conn: sqlite3.Connection, node: Node) -> bytes | None:
            self.count += 1
            return real(conn, node)

        def forbidden(*args: object) -> list[bytes]:
            raise AssertionError("a proof rehashed the leaves")

        monkeypatch.setattr(tree, "read_node", counting)
        monkeypatch.setattr(AuditLog, "_leaf_hashes", forbidden)

    def since(self, start: int) -> int:
        return self.count - start


@pytest.fixture(scope="module")
def log100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "audit.db"
    with AuditLog(path, clock=fake_clock()) as log:
        for lo in range(0, 100_000, 10_000):
            log.append_many([record(i) for i in range(lo, lo + 10_000)])
    return path


def test_proofs_at_100k_read_at_most_2_log2_n_stored_hashes(
    log100k: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 100_000
    bound = 2 * math.ceil(math.log2(n))  # 34
    rng = random.Random(100)
    seqs = [1, 2, n - 1, n, 65_536, 65_537, 99_999, *rng.sample(range(1, n + 1), 60)]
    olds = [1, 2, 65_536, 65_537, n - 1, *rng.sample(range(1, n), 60)]
    with AuditLog(log100k, readonly=True) as log:
        reference = {s: log._recomputed_inclusion_proof(s) for s in seqs[:3]}
        creference = {m: log._recomputed_consistency_proof(m) for m in olds[:3]}
        reads = NodeReads(monkeypatch)
        worst = 0
        for seq in seqs:
            start = reads.count
            proof = log.inclusion_proof(seq)
            worst = max(worst, reads.since(start))
            assert reads.since(start) <= bound, (seq, reads.since(start))
            assert proof.verify()
            assert seq not in reference or proof == reference[seq]
        for m in olds:
            start = reads.count
            cproof = log.consistency_proof(m)
            assert reads.since(start) <= bound, (m, reads.since(start))
            assert cproof.verify()
            assert m not in creference or cproof == creference[m]
            p = log.inclusion_proof(m, m)  # in the old tree too
            assert verify_inclusion(m - 1, m, p.leaf_hash, p.path, cproof.old_root)
        start = reads.count
        assert log.root() == reference[1].root
        assert reads.since(start) <= math.ceil(math.log2(n))
    assert worst >= math.ceil(math.log2(n)) - 1  # the counter does count


# ---------------------------------------------------------------------------------------------
# logs from before the stored hashes


def test_previous_format_verifies_proves_and_migrates(tmp_path: Path) -> None:
    path = build_log(tmp_path / "old.db", 45)
    with AuditLog(path, readonly=True) as log:
        expected_root = log.root()
        expected = [log.inclusion_proof(s) for s in (1, 20, 45)]
        expected_c = log.consistency_proof(13)
    to_previous_format(path)
    before = file_digest(path)
    with AuditLog(path, readonly=True) as log:  # as it is: read-only, rehashing the leaves
        assert not log._has_tree
        report = log.verify()
        assert report.ok, report.first_problem
        assert report.root == expected_root
        assert [log.inclusion_proof(s) for s in (1, 20, 45)] == expected
        assert log.consistency_proof(13) == expected_c
    assert file_digest(path) == before
    assert side_files(path) == []

    with AuditLog(path) as log:  # a writer migrates: column added and filled, triggers set
        assert log._has_tree
    conn = raw(path)
    try:
        blobs = dict(conn.execute("SELECT seq, nodes FROM entries").fetchall())
        assert [s for s, b in blobs.items() if b is not None] == list(range(2, 46, 2))
        assert all(len(b) == 32 * tree.completed_levels(s) for s, b in blobs.items() if b)
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE"):
            conn.execute("UPDATE entries SET payload = '{}' WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="written once"):
            conn.execute("UPDATE entries SET nodes = NULL WHERE seq = 2")
    finally:
        conn.close()
    with AuditLog(path, readonly=True) as log:
        assert log.verify().ok
        assert [log.inclusion_proof(s) for s in (1, 20, 45)] == expected
        assert log.consistency_proof(13) == expected_c
    with AuditLog(path, clock=fake_clock()) as log:
        log.append("after", "finding.recorded", "m")
        proof = log.consistency_proof(45)
        assert proof.old_root == expected_root
        assert proof.verify()
        assert log.verify().ok


def test_rows_of_an_older_writer_are_filled_in(tmp_path: Path) -> None:
    path = build_log(tmp_path / "audit.db", 20)
    writer = AuditLog(path, clock=fake_clock())
    try:
        writer.append(*record(20))  # the handle now knows the tree's right edge
        older_writer_append(path, [record(i) for i in range(21, 40)])  # 19 rows, no hashes
        with AuditLog(path, readonly=True) as log:
            hashes = log._leaf_hashes(None)
            assert len(hashes) == 40
            assert log.verify().ok  # missing hashes are not tampering
            for seq in (3, 22, 40):  # proofs fall back where a hash is missing: same proofs
                assert list(log.inclusion_proof(seq).path) == inclusion_path(seq - 1, hashes)
            assert list(log.consistency_proof(21).path) == consistency_path(21, hashes)
        for i in range(40, 48):  # entry 48 needs node (3, 4), leaves 32..39: the writer fills in
            writer.append(*record(i))
    finally:
        writer.close()
    conn = raw(path)
    try:
        missing = conn.execute(
            "SELECT COUNT(*) FROM entries WHERE seq % 2 = 0 AND nodes IS NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    assert missing == 0
    with AuditLog(path, readonly=True) as log:
        assert log.verify().ok
        hashes = log._leaf_hashes(None)
        assert len(hashes) == 48
        for seq in (30, 48):
            assert list(log.inclusion_proof(seq).path) == inclusion_path(seq - 1, hashes)
        assert tree.read_nodes(log._conn, [(3, 4), (2, 5), (1, 11)]) is not None


# ---------------------------------------------------------------------------------------------
# tampering with the stored hashes, file mode


def test_altered_tree_hashes_are_reported(tmp_path: Path) -> None:
    path = build_log(tmp_path / "audit.db", 30)
    signer = Signer.generate("example.com/audit")
    with AuditLog(path, readonly=True) as log:
        signed = parse_checkpoint(log.checkpoint(signer))
        honest = log.inclusion_proof(3)
    tamper(path, "UPDATE entries SET nodes = zeroblob(96) WHERE seq = 24")
    with AuditLog(path, readonly=True) as log:
        report = log.verify(signed, signer.verifier)
        assert report.problem_count == 1  # entries, chain and checkpoint root are intact
        assert report.problems[0].message.startswith(
            "entry 24: stored tree hashes do not match the leaf hashes: the tree column"
        )
        assert report.root == signed.checkpoint.root
        forged = log.inclusion_proof(3)  # built from the altered hashes: not the signed root
        assert forged.verify()
        assert forged.root != signed.checkpoint.root
        assert honest.root == signed.checkpoint.root
    with pytest.raises(AuditError, match="refusing to sign"), AuditLog(path, readonly=True) as log:
        log.checkpoint(signer)


def test_new_logs_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        log.append("a", "b", "c")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        wal = Path(f"{path}-wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
