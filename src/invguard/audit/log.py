"""The append-only, tamper-evident audit log: a SQLite file, a hash chain and an RFC 6962 tree.

Each entry is recorded with its canonical JSON form (sorted keys, no whitespace, UTF-8) of
``seq, timestamp, actor, action, subject, payload, prev_hash``; its leaf hash is the RFC 6962 leaf
hash of those bytes and ``prev_hash`` is the leaf hash of the entry before (32 zero bytes for the
first), so every entry commits to the whole history. The log's root is the RFC 6962 Merkle tree
hash over all leaf hashes; signed checkpoints (C2SP tlog-checkpoint) of that root, kept outside
the database, make even a complete, consistent rewrite of the file detectable.

Appends run one ``BEGIN IMMEDIATE`` transaction each (WAL mode, busy timeout), so concurrent
writers in several processes serialise without gaps or forks. SQLite triggers refuse UPDATE and
DELETE on the entries table and any INSERT that does not extend the chain. Readers open the file
read-only (``mode=ro``) and never change it. New files are created with mode 0600.

Each append also stores, in its own row, the RFC 6962 subtree hashes it completes
(:mod:`invguard.audit.tree`), so inclusion and consistency proofs read O(log n) stored hashes
instead of rehashing every leaf; ``verify`` recomputes the whole tree and checks them too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

from invguard.audit import tree
from invguard.audit.errors import (
    AuditError,
    CheckpointVerificationError,
    DamagedLogError,
    MissingLogError,
)
from invguard.audit.merkle import (
    EMPTY_ROOT,
    Node,
    Range,
    TreeEdge,
    consistency_path,
    consistency_ranges,
    consistency_roots,
    fold_nodes,
    inclusion_path,
    inclusion_ranges,
    inclusion_root,
    leaf_hash,
    perfect_nodes,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

if TYPE_CHECKING:  # keeps cryptography out of the import path
    from invguard.audit.checkpoint import Checkpoint, SignedCheckpoint
    from invguard.audit.keys import Signer, Verifier

T = TypeVar("T")
JSONValue = Any
Synchronous = Literal["NORMAL", "FULL"]

FORMAT = "invguard-audit/1"
GENESIS_HASH = bytes(32)
MAX_FIELD_CHARS = 4096
MAX_PAYLOAD_BYTES = 1 << 20
MAX_PROBLEMS = 100
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_COLUMNS = "seq, timestamp, actor, action, subject, payload, prev_hash, leaf_hash"
_TRIGGERS = ("entries_no_update", "entries_no_delete", "entries_extend_chain")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS entries (
        seq INTEGER PRIMARY KEY CHECK (seq >= 1),
        timestamp TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        payload TEXT NOT NULL,
        prev_hash BLOB NOT NULL CHECK (typeof(prev_hash) = 'blob' AND length(prev_hash) = 32),
        leaf_hash BLOB NOT NULL CHECK (typeof(leaf_hash) = 'blob' AND length(leaf_hash) = 32),
        nodes BLOB
    )""",
    """CREATE TRIGGER IF NOT EXISTS entries_no_update
    BEFORE UPDATE OF seq, timestamp, actor, action, subject, payload, prev_hash, leaf_hash
    ON entries
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE of entries refused'); END""",
    tree.NODES_TRIGGER_SQL,
    """CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE of entries refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS entries_extend_chain BEFORE INSERT ON entries
    WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries)
      OR NEW.prev_hash IS NOT COALESCE(
           (SELECT leaf_hash FROM entries ORDER BY seq DESC LIMIT 1), zeroblob(32))
    BEGIN SELECT RAISE(ABORT, 'audit log insert does not extend the hash chain'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_meta_no_update BEFORE UPDATE ON audit_meta
    BEGIN SELECT RAISE(ABORT, 'audit log metadata is read-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_meta_no_delete BEFORE DELETE ON audit_meta
    BEGIN SELECT RAISE(ABORT, 'audit log metadata is read-only'); END""",
)


# ---------------------------------------------------------------------------------------------
# canonical form


# What json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False) builds on every call, built once (an encoder keeps no state between calls).
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# json.dumps(text, ensure_ascii=False) of a str is exactly this function's result.
_jstr: Callable[[str], str] = json.encoder.encode_basestring


def canonical_json(value: JSONValue) -> str:
    """Canonical JSON: sorted keys, no whitespace, non-ASCII kept (UTF-8 when encoded), no NaN."""
    return _CANONICAL_ENCODER.encode(value)


def canonical_entry_bytes(
    seq: int,
    timestamp: str,
    actor: str,
    action: str,
    subject: str,
    payload_json: str,
    prev_hash: bytes,
) -> bytes:
    """The bytes an entry's leaf hash commits to: canonical JSON of the entry, UTF-8.

    Equal to ``canonical_json({"seq", "timestamp", "actor", "action", "subject", "payload",
    "prev_hash": hex})`` when ``payload_json`` is the canonical JSON of the payload; written out
    field by field (keys in sorted order) because it is on the hot path of verification.
    """
    return (
        f'{{"action":{_jstr(action)},"actor":{_jstr(actor)},"payload":{payload_json},'
        f'"prev_hash":"{prev_hash.hex()}","seq":{seq},"subject":{_jstr(subject)},'
        f'"timestamp":{_jstr(timestamp)}}}'
    ).encode()


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. ``2025-01-31T12:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise AuditError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 time or date given by a user; naive means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AuditError(
            f"expected an RFC 3339 time such as 2025-01-31T12:00:00Z, got {text[:40]!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _create_private(path: Path) -> None:
    """Create a new audit database file with mode 0600 (its owner only; SQLite gives the -wal
    and -shm files the same mode); an existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise AuditError(f"cannot create audit database {path}: {exc.strerror}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# value types


@dataclass(frozen=True)
class Entry:
    """One audit log entry. ``leaf_hash`` is the RFC 6962 leaf hash of :meth:`canonical_bytes`."""

    seq: int
    timestamp: str
    actor: str
    action: str
    subject: str
    payload: JSONValue
    prev_hash: bytes
    leaf_hash: bytes

    @property
    def leaf_index(self) -> int:
        """0-based RFC 6962 leaf index (``seq - 1``)."""
        return self.seq - 1

    def canonical_bytes(self) -> bytes:
        return canonical_entry_bytes(
            self.seq,
            self.timestamp,
            self.actor,
            self.action,
            self.subject,
            canonical_json(self.payload),
            self.prev_hash,
        )

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready form (hashes in hex)."""
        return {
            "seq": self.seq,
            "timestamp": self.timestamp,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "payload": self.payload,
            "prev_hash": self.prev_hash.hex(),
            "leaf_hash": self.leaf_hash.hex(),
        }


@dataclass(frozen=True)
class Problem:
    """A verification failure; ``message`` is one line, starting with ``entry N:`` if it has one."""

    kind: str
    message: str
    seq: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    """Result of :meth:`AuditLog.verify`: entries read, recomputed root, problems found."""

    path: str
    size: int
    root: bytes
    problems: tuple[Problem, ...]
    problem_count: int
    checkpoint: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None


@dataclass(frozen=True)
class InclusionProof:
    """RFC 6962 §2.1.1 inclusion proof of entry ``seq`` (leaf ``seq - 1``) in a tree."""

    seq: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    path: tuple[bytes, ...]

    def verify(self) -> bool:
        """RFC 9162 §2.1.3.2 verification against :attr:`root`."""
        return verify_inclusion(self.seq - 1, self.tree_size, self.leaf_hash, self.path, self.root)

    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "type": "inclusion",
            "seq": self.seq,
            "leaf_index": self.seq - 1,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "root": self.root.hex(),
            "path": [h.hex() for h in self.path],
        }


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 6962 §2.1.2 consistency proof that tree ``old_size`` is a prefix of ``new_size``."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: tuple[bytes, ...]

    def verify(self) -> bool:
        """RFC 9162 §2.1.4.2 verification."""
        return verify_consistency(
            self.old_size, self.new_size, self.old_root, self.new_root, self.path
        )

    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "type": "consistency",
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "path": [h.hex() for h in self.path],
        }


# ---------------------------------------------------------------------------------------------
# validation


def _check_field(name: str, value: object, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise AuditError(f"{name} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise AuditError(f"{name} must not be empty")
    if len(value) > MAX_FIELD_CHARS:
        raise AuditError(f"{name} is longer than {MAX_FIELD_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditError(f"{name} is not valid Unicode text (lone surrogate)") from None
    return value


def _payload_json(payload: object) -> str:
    try:
        text = canonical_json(payload)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise AuditError(f"payload is not JSON-serialisable: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise AuditError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes of JSON")
    return text


Record = tuple[str, str, str, object]


# ---------------------------------------------------------------------------------------------
# the log


class AuditLog:
    """An audit log in the SQLite file ``path``.

    Writable (default): creates the file and schema if missing; ``append`` is safe from many
    processes at once. ``readonly=True`` opens an existing file with ``mode=ro`` and never
    creates or modifies anything (``verify``, ``entries``, proofs and checkpoints only read).

    ``synchronous``: ``"NORMAL"`` (default) makes an append durable once it returns against a
    crash or SIGKILL of the process (the committed WAL frames are in the OS); ``"FULL"`` also
    against power loss or an OS crash, at one fsync per append (300 to 3,000 appends/s on the
    development VM, following its fsync latency, against 10,000 to 20,000 with NORMAL).

    ``salvage=True`` (read-only): read a file that SQLite calls corrupt as far as it can
    (``PRAGMA writable_schema``, which lifts the check that the file is as long as its header
    says), so that ``verify`` can name the first unreadable entry; :func:`verify_file` uses it.
    Open a damaged file that way only to verify it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        synchronous: Synchronous = "NORMAL",
        timeout: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
        salvage: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._salvage = salvage
        self._timeout = timeout
        self._clock = clock
        self._immutable = False
        self._fingerprint0: tuple[object, ...] = ()
        if synchronous not in ("NORMAL", "FULL"):
            raise AuditError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if salvage and not readonly:
            raise AuditError("salvage=True needs readonly=True")
        self._has_tree = True
        self._edge = TreeEdge(-1)  # the tree's right edge after this handle's last append
        try:
            if readonly:
                self._conn = self._open_readonly()
            else:
                self._conn = self._open_writable(synchronous)
        except sqlite3.OperationalError as exc:
            raise AuditError(f"cannot open audit database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise DamagedLogError(
                self.path,
                f"is not a readable audit database: {exc} (damaged, truncated or not SQLite)",
                recognised=False,
                detail=f"SQLite: {exc}",
            ) from None

    # -- opening ------------------------------------------------------------------------------

    def _fingerprint(self) -> tuple[object, ...]:
        st = os.stat(self.path)
        side = tuple(
            Path(f"{self.path}{suffix}").exists() for suffix in ("-wal", "-journal", "-shm")
        )
        return (st.st_ino, st.st_size, st.st_mtime_ns, *side)

    def _uri(self, immutable: bool) -> str:
        uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
        return uri + "&immutable=1" if immutable else uri

    def _open_readonly(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise MissingLogError(f"audit database {self.path} does not exist") from None
        except OSError as exc:
            raise AuditError(f"cannot open audit database {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"audit database {self.path} is not a regular file")
        if st.st_size == 0 and not Path(f"{self.path}-wal").exists():
            raise DamagedLogError(
                self.path, "is empty (0 bytes), not an InvGuard audit log", recognised=False
            )
        # With no -wal/-journal beside it no writer has the file open, and an immutable
        # connection reads it without creating -wal/-shm files. Every read checks that the file
        # has not changed since, and falls back to a normal read-only connection if it has.
        self._fingerprint0 = self._fingerprint()
        self._immutable = not any(self._fingerprint0[3:5])
        conn = self._connect_readonly()
        try:
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._uri(self._immutable), uri=True, timeout=self._timeout, isolation_level=None
        )
        if self._salvage:  # SQLite refuses a file shorter than its header says; read what is there
            conn.execute("PRAGMA writable_schema = ON")
        return conn

    def _open_writable(self, synchronous: Synchronous) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise AuditError(f"folder {self.path.parent} of the audit database does not exist")
        if self.path.exists() and not self.path.is_file():
            raise AuditError(f"audit database {self.path} is not a regular file")
        _create_private(self.path)
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            self._retry_locked(lambda: self._set_wal(conn))
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            self._retry_locked(lambda: self._create_schema(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _retry_locked(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise self._busy_error(exc) from None
                time.sleep(0.01)

    def _busy_error(self, exc: sqlite3.OperationalError) -> AuditError:
        if "locked" in str(exc) or "busy" in str(exc):
            return AuditError(
                f"audit database {self.path} is locked by another writer "
                f"for more than {self._timeout:g} s"
            )
        return AuditError(f"audit database {self.path}: {exc}")

    @staticmethod
    def _set_wal(conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if tables and "audit_meta" not in tables:
                raise AuditError(f"{self.path} is a SQLite database but not an InvGuard audit log")
            if "entries" in tables and not tree.has_nodes_column(conn):
                tree.add_nodes_column(conn)  # a log from before the stored tree
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('format', ?)", (FORMAT,)
            )
            size = tree.stored_size(conn)
            if not tree.is_complete(conn, size):  # migrated, or an older writer appended
                tree.fill(conn, size)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._check_schema(conn)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "entries" not in tables or "audit_meta" not in tables:
            raise DamagedLogError(
                self.path, "is not an InvGuard audit log (no entries table)", recognised=False
            )
        row = conn.execute("SELECT value FROM audit_meta WHERE key = 'format'").fetchone()
        if row is None:
            raise DamagedLogError(
                self.path, "is not an InvGuard audit log (no format marker)", recognised=False
            )
        if row[0] != FORMAT:
            raise AuditError(
                f"{self.path} has audit log format {str(row[0])[:40]!r}; "
                f"this version reads {FORMAT!r}"
            )
        self._has_tree = tree.has_nodes_column(conn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read; on an immutable connection make sure the file did not change meanwhile."""
        try:
            if self._immutable:
                if self._fingerprint() == self._fingerprint0:
                    result = fn(self._conn)
                    if self._fingerprint() == self._fingerprint0:
                        return result
                self._conn.close()
                self._immutable = False
                self._conn = self._connect_readonly()
            return fn(self._conn)
        except sqlite3.OperationalError as exc:
            raise self._busy_error(exc) from None
        except sqlite3.DatabaseError as exc:
            raise DamagedLogError(
                self.path, f"cannot be read: {exc} (damaged or truncated file)", recognised=True
            ) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def append(self, actor: str, action: str, subject: str, payload: object = None) -> Entry:
        """Append one entry (one ``BEGIN IMMEDIATE`` transaction) and return it.

        ``payload`` is any JSON value (default ``{}``). Durable once this returns.
        """
        return self.append_many([(actor, action, subject, payload)])[0]

    def append_many(self, records: Iterable[Record]) -> list[Entry]:
        """Append ``(actor, action, subject, payload)`` records in one transaction.

        The entries are exactly those that the same calls to :meth:`append` would record.
        """
        if self.readonly:
            raise AuditError(f"audit log {self.path} was opened read-only")
        prepared = []
        for actor, action, subject, payload in records:
            payload = {} if payload is None else payload
            text = _payload_json(payload)
            prepared.append(
                (
                    _check_field("actor", actor, allow_empty=False),
                    _check_field("action", action, allow_empty=False),
                    _check_field("subject", subject, allow_empty=True),
                    text,
                    json.loads(text),
                )
            )
        if not prepared:
            return []
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._busy_error(exc) from None
        try:
            last = conn.execute(
                "SELECT seq, leaf_hash FROM entries ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]), bytes(last[1])) if last else (0, GENESIS_HASH)
            size, last_leaf = seq, prev
            rows = []
            out = []
            for actor, action, subject, text, payload in prepared:
                seq += 1
                ts = format_timestamp(self._clock())
                lh = leaf_hash(canonical_entry_bytes(seq, ts, actor, action, subject, text, prev))
                rows.append((seq, ts, actor, action, subject, text, prev, lh))
                out.append(Entry(seq, ts, actor, action, subject, payload, prev, lh))
                prev = lh
            edge = self._edge if self._edge.size == size else TreeEdge(size)
            blobs, edge = tree.appended_blobs(conn, edge, last_leaf, [e.leaf_hash for e in out])
            sql = f"INSERT INTO entries ({_COLUMNS}, nodes) VALUES (?,?,?,?,?,?,?,?,?)"
            if len(rows) == 1:
                conn.execute(sql, (*rows[0], blobs[0]))
            else:
                conn.executemany(sql, [(*r, b) for r, b in zip(rows, blobs, strict=True)])
            conn.execute("COMMIT")
            self._edge = edge  # the right edge of the tree now: the next append reads nothing
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self._busy_error(exc) from None
            if isinstance(exc, sqlite3.DatabaseError):
                raise AuditError(f"cannot append to {self.path}: {exc}") from None
            raise
        return out

    # -- reading ------------------------------------------------------------------------------

    def size(self) -> int:
        """Number of entries (the tree size)."""
        return self._read(lambda c: int(c.execute("SELECT COUNT(*) FROM entries").fetchone()[0]))

    def entries(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Entries in sequence order, filtered by exact action/actor/subject and by time
        (``since <= timestamp < until``)."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (("action", action), ("actor", actor), ("subject", subject)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("timestamp >= ?")
            params.append(format_timestamp(since))
        if until is not None:
            where.append("timestamp < ?")
            params.append(format_timestamp(until))
        sql = f"SELECT {_COLUMNS} FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._read(lambda c: c.execute(sql, params).fetchall())
        return [self._entry(r) for r in rows]

    def entry(self, seq: int) -> Entry:
        """The entry with sequence number ``seq``."""
        row = self._read(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq = ?", (seq,)).fetchone()
        )
        if row is None:
            raise AuditError(f"entry {seq} does not exist in {self.path}")
        return self._entry(row)

    def _entry(self, row: Sequence[Any]) -> Entry:
        try:
            payload = json.loads(row[5])
        except (TypeError, ValueError):
            raise AuditError(
                f"entry {row[0]}: payload is not valid JSON (run 'invguard audit verify')"
            ) from None
        return Entry(
            int(row[0]),
            str(row[1]),
            str(row[2]),
            str(row[3]),
            str(row[4]),
            payload,
            bytes(row[6]),
            bytes(row[7]),
        )

    def _leaf_hashes(self, size: int | None) -> list[bytes]:
        """Stored leaf hashes of the first ``size`` entries (all by default)."""

        def read(c: sqlite3.Connection) -> list[tuple[int, bytes]]:
            sql = "SELECT seq, leaf_hash FROM entries ORDER BY seq"
            if size is None:
                return c.execute(sql).fetchall()
            return c.execute(sql + " LIMIT ?", (size,)).fetchall()

        rows = self._read(read)
        if rows and (rows[0][0] != 1 or rows[-1][0] != len(rows)):
            raise AuditError(
                f"{self.path} has a gap in its sequence numbers (run 'invguard audit verify')"
            )
        return [bytes(r[1]) for r in rows]

    def _tree_size(self, size: int | None) -> int:
        """The tree size asked for (default: the log's), checked against the log."""
        n = self._read(tree.stored_size)
        if size is None:
            return n
        if size > n:
            raise AuditError(f"tree size {size} is larger than the log ({n} entries)")
        return size

    def _read_nodes(self, nodes: set[Node]) -> dict[Node, bytes] | None:
        """Stored hashes of ``nodes``, one primary-key lookup each; None if any is missing."""
        if not self._has_tree and any(level for level, _ in nodes):
            return None
        return self._read(lambda c: tree.read_nodes(c, sorted(nodes)))

    def _stored_hashes(
        self, ranges: Sequence[Range], extra: Iterable[Node] = ()
    ) -> tuple[list[bytes], dict[Node, bytes]] | None:
        """The hashes of the subtrees ``ranges`` from stored nodes (and the nodes read)."""
        pieces = [perfect_nodes(lo, hi) for lo, hi in ranges]
        found = self._read_nodes({node for p in pieces for node in p} | set(extra))
        if found is None:
            return None
        return [fold_nodes(p, found) for p in pieces], found

    def _stored_root(self, n: int) -> bytes | None:
        if n == 0:
            return EMPTY_ROOT
        stored = self._stored_hashes([(0, n)])
        return None if stored is None else stored[0][0]

    def root(self, size: int | None = None) -> bytes:
        """RFC 6962 root over the stored leaf hashes of the first ``size`` entries (all).

        O(log n) stored node reads; rehashes the leaves on a log without the stored tree.
        """
        root = self._stored_root(self._tree_size(size))
        return self._recomputed_root(size) if root is None else root

    def inclusion_proof(self, seq: int, size: int | None = None) -> InclusionProof:
        """Inclusion proof of entry ``seq`` (1-based; leaf ``seq - 1``) in tree size ``size``.

        The leaf hash is recomputed from the entry's contents; the path uses stored hashes:
        O(log n) stored node reads, the root follows from the path (RFC 9162 §2.1.3.2). A log
        without the stored tree falls back to rehashing its leaves (the same proof).
        """
        n = self._tree_size(size)
        if not 1 <= seq <= n:
            raise AuditError(f"entry {seq} is not in a tree of size {n} (entries are 1..{n})")
        entry = self.entry(seq)
        lh = leaf_hash(entry.canonical_bytes())
        if lh != entry.leaf_hash:
            raise AuditError(
                f"entry {seq}: stored leaf hash does not match its contents "
                "(run 'invguard audit verify')"
            )
        stored = self._stored_hashes(inclusion_ranges(seq - 1, n))
        root = None if stored is None else inclusion_root(seq - 1, n, lh, stored[0])
        if stored is None or root is None:
            return self._recomputed_inclusion_proof(seq, size)
        return InclusionProof(seq, n, lh, root, tuple(stored[0]))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Consistency proof between tree sizes ``old_size <= new_size`` (default: current).

        O(log n) stored node reads (both roots follow from the path, RFC 9162 §2.1.4.2); a log
        without the stored tree falls back to rehashing its leaves (the same proof).
        """
        n = self._tree_size(new_size)
        if not 0 <= old_size <= n:
            raise AuditError(f"old tree size must be between 0 and {n}, got {old_size}")
        if old_size in (0, n):
            new_root = self._stored_root(n)
            if new_root is None:
                return self._recomputed_consistency_proof(old_size, new_size)
            old_root = EMPTY_ROOT if old_size == 0 else new_root
            return ConsistencyProof(old_size, n, old_root, new_root, ())
        old_node = (old_size.bit_length() - 1, 0)  # the old tree, when it is a perfect one
        perfect = old_size & (old_size - 1) == 0
        stored = self._stored_hashes(consistency_ranges(old_size, n), [old_node] if perfect else [])
        roots = None
        if stored is not None:
            roots = consistency_roots(old_size, n, stored[0], stored[1].get(old_node, EMPTY_ROOT))
        if stored is None or roots is None:
            return self._recomputed_consistency_proof(old_size, new_size)
        return ConsistencyProof(old_size, n, roots[0], roots[1], tuple(stored[0]))

    # The proofs by rehashing every leaf (O(n)): the fallback for logs without the stored tree,
    # and the reference that the stored-node proofs are tested and benchmarked against.

    def _recomputed_root(self, size: int | None = None) -> bytes:
        hashes = self._leaf_hashes(size)
        if size is not None and len(hashes) != size:
            raise AuditError(f"tree size {size} is larger than the log ({len(hashes)} entries)")
        return root_from_leaf_hashes(hashes)

    def _recomputed_inclusion_proof(self, seq: int, size: int | None = None) -> InclusionProof:
        hashes = self._leaf_hashes(size)
        n = len(hashes) if size is None else size
        if size is not None and len(hashes) != size:
            raise AuditError(f"tree size {size} is larger than the log ({len(hashes)} entries)")
        if not 1 <= seq <= n:
            raise AuditError(f"entry {seq} is not in a tree of size {n} (entries are 1..{n})")
        entry = self.entry(seq)
        lh = leaf_hash(entry.canonical_bytes())
        if lh != entry.leaf_hash or lh != hashes[seq - 1]:
            raise AuditError(
                f"entry {seq}: stored leaf hash does not match its contents "
                "(run 'invguard audit verify')"
            )
        return InclusionProof(
            seq, n, lh, root_from_leaf_hashes(hashes), tuple(inclusion_path(seq - 1, hashes))
        )

    def _recomputed_consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        hashes = self._leaf_hashes(new_size)
        n = len(hashes) if new_size is None else new_size
        if new_size is not None and len(hashes) != new_size:
            raise AuditError(f"tree size {new_size} is larger than the log ({len(hashes)} entries)")
        if not 0 <= old_size <= n:
            raise AuditError(f"old tree size must be between 0 and {n}, got {old_size}")
        return ConsistencyProof(
            old_size,
            n,
            root_from_leaf_hashes(hashes[:old_size]),
            root_from_leaf_hashes(hashes),
            tuple(consistency_path(old_size, hashes)),
        )

    # -- verification -------------------------------------------------------------------------

    def verify(
        self,
        checkpoint: SignedCheckpoint | None = None,
        verifier: Verifier | None = None,
    ) -> VerifyReport:
        """Recompute every leaf hash, the chain and the root; check a checkpoint if given.

        Problems, in this order: entries (seq order; a damaged file is reported as its first
        unreadable entry, and the scan stops there), schema, checkpoint, stored tree nodes.
        With a checkpoint, ``verifier`` (the trusted public key) is required.
        """
        if (checkpoint is None) != (verifier is None):
            raise AuditError("a checkpoint and the public key to check it go together")
        scan = self._read(_scan)
        root = root_from_leaf_hashes(scan.leaves) if scan.root is None else scan.root
        problems = scan.problems
        cp = None
        if checkpoint is not None and verifier is not None:
            cp = checkpoint.checkpoint
            problem = _check_checkpoint(
                checkpoint, verifier, scan.leaves, root, damaged=scan.damaged
            )
            if problem is not None:
                problems.append(problem)
        problems += [Problem("tree", message) for message in scan.tree_messages]
        return VerifyReport(
            str(self.path),
            len(scan.leaves),
            root,
            tuple(problems[:MAX_PROBLEMS]),
            len(problems),
            cp,
        )

    def checkpoint(self, signer: Signer, origin: str | None = None) -> str:
        """Verify the log, then sign its tree head: a C2SP signed checkpoint note.

        ``origin`` defaults to the key name (C2SP tlog-checkpoint: the key name should match it).
        """
        from invguard.audit.checkpoint import Checkpoint, sign

        report = self.verify()
        if not report.ok:
            first = report.first_problem
            raise AuditError(
                "refusing to sign a checkpoint for a log that fails verification: "
                f"{first.message if first else 'unknown problem'}"
            )
        return sign(Checkpoint(origin or signer.name, report.size, report.root), signer)


@dataclass
class _Scan:
    """What one pass over the file found (local to a read: a retried read starts afresh)."""

    leaves: list[bytes]
    problems: list[Problem]
    damaged: bool = False
    tree_messages: tuple[str, ...] = ()
    root: bytes | None = None


def _lenient_text(data: bytes) -> str | bytes:
    """A text value as str, or its raw bytes when it is not UTF-8 (``_check_row`` names it)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _rows(conn: sqlite3.Connection, columns: str) -> Iterator[Sequence[Any]]:
    """All entries in sequence order, for ``verify``: a damaged file yields what it can.

    After a read error the rows after the last good one are read again one at a time, so
    that the error surfaces at the first unreadable entry; text that is not UTF-8 comes back
    as bytes from then on (a malformed row) instead of stopping the scan.
    """
    last, size = 0, 4096
    sql = f"SELECT {columns} FROM entries WHERE seq > ? ORDER BY seq"
    while True:
        try:
            cursor = conn.execute(sql, (last,))
            while batch := cursor.fetchmany(size):
                for row in batch:
                    if not isinstance(row[0], int) or row[0] <= last:  # a page read as zeros
                        raise sqlite3.DatabaseError("entries out of order: damaged b-tree page")
                    yield row
                    last = row[0]
            return
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc) or conn.text_factory is _lenient_text:
                raise
            conn.text_factory = _lenient_text
        except sqlite3.DatabaseError:
            if size == 1:
                raise
            size = 1


def _scan(c: sqlite3.Connection) -> _Scan:
    """Check every entry, its stored tree hashes and the schema of the open database ``c``."""
    scan = _Scan([], [])
    has_nodes = tree.has_nodes_column(c)
    nodes = tree.NodeChecker()
    same_leaves = True  # stored leaf hashes == recomputed ones: the checked tree's root is it
    expected_seq, prev = 1, GENESIS_HASH
    text_factory = c.text_factory
    try:
        for row in _rows(c, f"{_COLUMNS}, nodes" if has_nodes else _COLUMNS):
            leaf, stored = _check_row(row, expected_seq, prev, scan.problems.append)
            scan.leaves.append(leaf)
            nodes.push(row[0], stored, row[8] if has_nodes else None)
            same_leaves = same_leaves and leaf == stored
            expected_seq = row[0] + 1 if isinstance(row[0], int) else expected_seq + 1
            prev = stored
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        scan.damaged = True
        scan.problems.append(
            Problem(
                "unreadable",
                f"entry {expected_seq}: unreadable ({exc}): the file is damaged or truncated",
                expected_seq,
            )
        )
        return scan
    finally:
        c.text_factory = text_factory
    scan.problems += _schema_problems(c, has_nodes)
    scan.tree_messages = tuple(nodes.messages())
    if same_leaves:
        scan.root = nodes.edge.root()
    return scan


def _schema_problems(c: sqlite3.Connection, has_nodes: bool) -> list[Problem]:
    triggers = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    expected = _TRIGGERS + ((tree.NODES_TRIGGER,) if has_nodes else ())
    missing = [t for t in expected if t not in triggers]
    if not missing:
        return []
    return [
        Problem(
            "schema",
            f"append-only triggers missing ({', '.join(missing)}): "
            "the schema was altered outside InvGuard",
        )
    ]


def _check_row(
    row: Sequence[Any], expected_seq: int, prev: bytes, add: Callable[[Problem], None]
) -> tuple[bytes, bytes]:
    """Check one row; returns (recomputed leaf hash, stored leaf hash for the next link)."""
    seq = row[0]
    try:
        if not isinstance(seq, int):
            raise TypeError("seq")
        for i, name in ((1, "timestamp"), (2, "actor"), (3, "action"), (4, "subject")):
            if not isinstance(row[i], str):
                raise TypeError(name)
        for i, name in ((6, "prev_hash"), (7, "leaf_hash")):
            if not isinstance(row[i], bytes) or len(row[i]) != 32:
                raise TypeError(name)
        payload_text = row[5]
        if not isinstance(payload_text, str):
            raise TypeError("payload")
        payload_ok = True
        try:
            payload_ok = canonical_json(json.loads(payload_text)) == payload_text
        except (ValueError, RecursionError):
            payload_ok = False
        data = canonical_entry_bytes(seq, row[1], row[2], row[3], row[4], payload_text, row[6])
    except (TypeError, UnicodeEncodeError) as exc:
        add(
            Problem(
                "row",
                f"entry {seq}: malformed row ({exc} column)",
                seq if isinstance(seq, int) else None,
            )
        )
        stored = row[7] if isinstance(row[7], bytes) else b""
        return leaf_hash(repr(tuple(row)).encode("utf-8", "replace")), stored
    leaf = leaf_hash(data)
    stored = row[7]
    if leaf != stored:
        add(Problem("leaf-hash", f"entry {seq}: stored leaf hash does not match its contents", seq))
    elif not payload_ok:
        add(
            Problem(
                "payload",
                f"entry {seq}: payload is not in canonical JSON form (edited outside InvGuard)",
                seq,
            )
        )
    if row[6] != prev:
        where = "" if seq == expected_seq else f"; expected entry {expected_seq} next"
        if expected_seq == 1 and seq == 1:
            where = "; the first entry must link to the all-zero hash"
        add(
            Problem(
                "chain",
                f"entry {seq}: previous-hash link broken (entry missing or reordered{where})",
                seq,
            )
        )
    elif seq != expected_seq:
        add(
            Problem(
                "sequence",
                f"entry {seq}: sequence number jumps from {expected_seq - 1} to {seq} "
                "(entries missing)",
                seq,
            )
        )
    return leaf, stored


def _check_checkpoint(
    signed: SignedCheckpoint,
    verifier: Verifier,
    leaves: list[bytes],
    root: bytes,
    *,
    damaged: bool = False,
) -> Problem | None:
    from invguard.audit.checkpoint import verify_signature

    try:
        cp = verify_signature(signed, verifier)
    except CheckpointVerificationError as exc:
        return Problem("checkpoint", str(exc))
    if cp.size > len(leaves):
        if damaged:
            return Problem(
                "checkpoint",
                f"log has {len(leaves)} readable entries, checkpoint commits to {cp.size}: "
                "the file is damaged or truncated",
            )
        return Problem(
            "checkpoint",
            f"log has {len(leaves)} entries but the checkpoint commits to {cp.size}: "
            "entries were removed",
        )
    prefix_root = root if cp.size == len(leaves) else root_from_leaf_hashes(leaves[: cp.size])
    if cp.size == 0:
        prefix_root = EMPTY_ROOT
    if prefix_root != cp.root:
        return Problem(
            "checkpoint",
            f"checkpoint root does not match the log (tree size {cp.size}): "
            "entries up to it were changed",
        )
    return None


def verify_file(
    path: str | os.PathLike[str],
    checkpoint: SignedCheckpoint | None = None,
    verifier: Verifier | None = None,
) -> VerifyReport:
    """Verify the log in ``path`` read-only, judging a damaged file as evidence where it is.

    * A file that opens is verified by :meth:`AuditLog.verify`; a damaged one reports its first
      unreadable entry, the scan stopping there (tampered).
    * A file that SQLite refuses (truncated, damaged) but that still reads as an InvGuard audit
      log (its schema and format marker) is opened with ``salvage=True`` and verified as far as
      it goes: tampered, with the first unreadable entry, also without a checkpoint.
    * A file that is no audit log at all (missing, empty, not SQLite, no audit tables) is
      tampered when a valid checkpoint commits to at least one entry ("log has 0 readable
      entries, checkpoint commits to N: ...") or when the checkpoint itself fails; otherwise
      it is bad input and the :class:`AuditError` is raised (nothing proves a log was there:
      it may be the wrong path).
    """
    if (checkpoint is None) != (verifier is None):
        raise AuditError("a checkpoint and the public key to check it go together")
    try:
        with AuditLog(path, readonly=True) as log:
            return log.verify(checkpoint, verifier)
    except DamagedLogError as exc:
        report = _verify_salvaged(path, checkpoint, verifier, exc)
        if report is not None:
            return report
        problems = _unopenable(exc, checkpoint, verifier)
        if not problems:
            raise
    except MissingLogError as exc:
        problems = _unopenable(exc, checkpoint, verifier)
        if not problems:
            raise
    cp = None if checkpoint is None else checkpoint.checkpoint
    return VerifyReport(str(path), 0, EMPTY_ROOT, tuple(problems), len(problems), cp)


def _verify_salvaged(
    path: str | os.PathLike[str],
    checkpoint: SignedCheckpoint | None,
    verifier: Verifier | None,
    damage: DamagedLogError,
) -> VerifyReport | None:
    """Verify a file that SQLite refused, read with ``salvage=True``; None if it cannot be.

    The first problem names the damage (and, with a valid checkpoint that commits to more,
    how many entries could be read); the entries' own problems follow.
    """
    try:
        with AuditLog(path, readonly=True, salvage=True) as log:
            report = log.verify(checkpoint, verifier)
    except AuditError:
        return None
    committed = _committed_size(checkpoint, verifier)
    if committed is not None and committed > report.size:
        first = Problem(
            "damaged",
            f"log has {report.size} readable entries, checkpoint commits to {committed}: "
            f"the audit log file is damaged or truncated ({damage.detail})",
        )
    else:
        first = Problem(
            "damaged",
            f"the audit log file is damaged or truncated ({damage.detail}); "
            f"{report.size} entries readable",
        )
    problems = (first, *report.problems)
    return VerifyReport(
        report.path,
        report.size,
        report.root,
        problems[:MAX_PROBLEMS],
        report.problem_count + 1,
        report.checkpoint,
    )


def _committed_size(signed: SignedCheckpoint | None, verifier: Verifier | None) -> int | None:
    """The tree size a checkpoint commits to, None without one or if its signature fails."""
    from invguard.audit.checkpoint import verify_signature

    if signed is None or verifier is None:
        return None
    try:
        return verify_signature(signed, verifier).size
    except CheckpointVerificationError:
        return None


def _unopenable(
    exc: MissingLogError | DamagedLogError,
    signed: SignedCheckpoint | None,
    verifier: Verifier | None,
) -> list[Problem]:
    """The problems of a log file that cannot be opened; empty when that is only bad input."""
    from invguard.audit.checkpoint import verify_signature

    reason = exc.reason if isinstance(exc, DamagedLogError) else "does not exist"
    recognised = isinstance(exc, DamagedLogError) and exc.recognised
    committed = 0
    checkpoint_problems: list[Problem] = []
    if signed is not None and verifier is not None:
        try:
            committed = verify_signature(signed, verifier).size
        except CheckpointVerificationError as err:
            checkpoint_problems.append(Problem("checkpoint", str(err)))
    if committed:
        return [
            Problem(
                "damaged",
                f"log has 0 readable entries, checkpoint commits to {committed}: the file {reason}",
            )
        ]
    if recognised or checkpoint_problems:
        return [Problem("damaged", f"the file {reason}"), *checkpoint_problems]
    return []
