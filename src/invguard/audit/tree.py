"""The stored RFC 6962 subtree hashes of an audit log, kept in the ``nodes`` column of ``entries``.

Node ``(level, idx)`` (the perfect subtree over the ``2**level`` leaves from ``idx << level``, see
:mod:`invguard.audit.merkle`) is completed by the append of its last leaf, entry
``seq = (idx + 1) << level``; that entry's ``nodes`` column holds the hashes of the nodes it
completed, levels 1, 2, ... concatenated (32 bytes each; NULL when it completed none, i.e. for
every odd ``seq``). Level 0, the leaf hashes, is the ``leaf_hash`` column. So an append writes its
tree hashes into the row it inserts anyway (no extra table, no extra page to commit), and a node
is one primary-key lookup: proofs read O(log n) rows.

Logs written before the column existed, or rows appended by an older InvGuard, have NULL there:
writers fill it in (:func:`fill`; the column may go from NULL to a value once, triggers refuse
any other UPDATE), readers fall back to rehashing the leaves, so a missing hash never changes a
proof, only its speed. ``verify`` recomputes every stored hash (:class:`NodeChecker`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from invguard.audit.errors import AuditError
from invguard.audit.merkle import HASH_SIZE, Node, TreeEdge

NODES_TRIGGER = "entries_nodes_write_once"
NODES_TRIGGER_SQL = f"""CREATE TRIGGER IF NOT EXISTS {NODES_TRIGGER}
    BEFORE UPDATE OF nodes ON entries WHEN OLD.nodes IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'audit log tree hashes are written once'); END"""


class _MissingNodeError(Exception):
    """A node that an append needs is not stored (old-format log, or an older writer)."""


def completed_levels(seq: int) -> int:
    """How many nodes the append of entry ``seq`` completes: trailing one bits of ``seq - 1``."""
    k = seq - 1
    return ((k ^ (k + 1)).bit_length() - 1) if k >= 0 else 0


def has_nodes_column(conn: sqlite3.Connection) -> bool:
    """Whether ``entries`` has the ``nodes`` column (logs from before it do not)."""
    return any(row[1] == "nodes" for row in conn.execute("PRAGMA table_info(entries)"))


def add_nodes_column(conn: sqlite3.Connection) -> None:
    """Migrate a log from before the stored tree (inside the caller's write transaction): add
    the column, narrow the no-update trigger to the other columns, add the write-once trigger.
    """
    conn.execute("ALTER TABLE entries ADD COLUMN nodes BLOB")
    conn.execute("DROP TRIGGER IF EXISTS entries_no_update")


def read_node(conn: sqlite3.Connection, node: Node) -> bytes | None:
    """The stored hash of ``node`` (level 0: an entry's leaf hash), None if not stored."""
    level, idx = node
    if level == 0:
        row = conn.execute("SELECT leaf_hash FROM entries WHERE seq = ?", (idx + 1,)).fetchone()
        value = None if row is None else row[0]
    else:
        row = conn.execute(
            "SELECT nodes FROM entries WHERE seq = ?", ((idx + 1) << level,)
        ).fetchone()
        blob = None if row is None else row[0]
        value = blob[(level - 1) * HASH_SIZE : level * HASH_SIZE] if blob else None
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        return None
    return value


def read_nodes(conn: sqlite3.Connection, nodes: Iterable[Node]) -> dict[Node, bytes] | None:
    """The stored hashes of ``nodes`` (one primary-key lookup each), None if any is missing."""
    found: dict[Node, bytes] = {}
    for node in nodes:
        value = read_node(conn, node)
        if value is None:
            return None
        found[node] = value
    return found


def stored_size(conn: sqlite3.Connection) -> int:
    """The tree size: the last sequence number (O(log n); equal to the row count when intact)."""
    row = conn.execute("SELECT MAX(seq) FROM entries").fetchone()
    return int(row[0]) if row and isinstance(row[0], int) else 0


def is_complete(conn: sqlite3.Connection, size: int) -> bool:
    """Whether the last node of every level is stored for tree size ``size`` (O(log n) reads).

    A cheap test for logs from before the column and for a writer that ran without it; a gap
    further left (an older writer that ran alongside) shows when an append or a proof needs it.
    """
    return all(
        read_node(conn, (level, (size >> level) - 1)) is not None
        for level in range(1, size.bit_length())
    )


def fill(conn: sqlite3.Connection, size: int) -> int:
    """Store the tree hashes missing from the first ``size`` entries; return how many rows.

    Runs inside the caller's write transaction; rebuilds the tree from the stored leaf hashes
    in sequence order and refuses a gap in the sequence numbers (``verify`` names it).
    """
    edge = TreeEdge()
    updates: list[tuple[bytes, int]] = []
    for seq, leaf, blob in conn.execute(
        "SELECT seq, leaf_hash, nodes FROM entries ORDER BY seq LIMIT ?", (size,)
    ):
        if seq != edge.size + 1 or not isinstance(leaf, bytes):
            raise AuditError(
                "cannot rebuild the stored tree: the log has a gap in its sequence numbers "
                "or a malformed leaf hash (run 'invguard audit verify')"
            )
        made = edge.push(leaf)
        if made and blob is None:
            updates.append((b"".join(made), seq))
    if edge.size != size:
        raise AuditError(f"cannot rebuild the stored tree: the log has fewer than {size} entries")
    conn.executemany("UPDATE entries SET nodes = ? WHERE seq = ?", updates)
    return len(updates)


def appended_blobs(
    conn: sqlite3.Connection, edge: TreeEdge, last_leaf: bytes, leaves: list[bytes]
) -> tuple[list[bytes | None], TreeEdge]:
    """The ``nodes`` values of the entries appended with leaf hashes ``leaves``, and the edge.

    ``edge``: the right edge of the tree before (of ``edge.size`` leaves, ``last_leaf`` the last
    one): a writer's edge from its previous append, or an empty one that reads the stored
    hashes it needs (about one per append). Runs inside the append's transaction; rebuilds the
    stored tree first if a hash it needs is missing. ``edge`` itself is not changed.
    """

    def frontier(node: Node) -> bytes:
        if node[0] == 0:
            return last_leaf
        value = read_node(conn, node)
        if value is None:
            raise _MissingNodeError(node)
        return value

    work = edge.copy()
    try:
        made = [work.push(leaf, frontier) for leaf in leaves]
    except _MissingNodeError:
        fill(conn, edge.size)
        work = edge.copy()
        try:
            made = [work.push(leaf, frontier) for leaf in leaves]
        except _MissingNodeError as exc:  # pragma: no cover - fill stores every node
            raise AuditError(
                f"cannot rebuild the stored tree: node {exc.args[0]} missing"
            ) from None
    return [b"".join(hashes) if hashes else None for hashes in made], work


@dataclass
class NodeChecker:
    """Checks the ``nodes`` column row by row while ``verify`` scans the entries in order.

    The tree is rebuilt from the *stored* leaf hashes (those the append hashed), so a stored
    tree hash is wrong only if the column itself was changed or the entries were rewritten.
    NULL (a log from before the column, or an older writer) is counted, never reported.
    """

    edge: TreeEdge = field(default_factory=TreeEdge)
    missing: int = 0
    mismatched: int = 0
    first_mismatch: int | None = None

    def push(self, seq: object, leaf: bytes, blob: object) -> None:
        made = self.edge.push(leaf)
        if blob is None:
            self.missing += 1 if made else 0
        elif blob != b"".join(made):
            self.mismatched += 1
            if self.first_mismatch is None:
                self.first_mismatch = seq if isinstance(seq, int) else -1

    def messages(self) -> list[str]:
        if not self.mismatched:
            return []
        others = self.mismatched - 1
        more = f" (and {others} more {'entry' if others == 1 else 'entries'})" if others else ""
        return [
            f"entry {self.first_mismatch}: stored tree hashes do not match the leaf hashes{more}: "
            "the tree column or the entries were rewritten outside InvGuard"
        ]
