"""Audit log figures: appends per second, proof times at 100,000 and 1,000,000 entries, verify.

Everything happens in a temporary folder (``--dir`` chooses where; the default is the system's).

* Appends/s, one writer: ``AuditLog.append`` (which stores the RFC 6962 subtree hashes each
  append completes) against the previous release's append transaction (kept below, verbatim,
  as :func:`legacy_append_many`: the same entry, no tree hashes), in alternating rounds on two
  files in the same run; medians of the rounds, wall clock and CPU time.
* Proofs: the logs are built with ``AuditLog.append_many`` in batches (the bulk path: exactly
  the entries that single appends would record), closed, and proved from a fresh read-only
  handle. Stored-hash proofs (the default) against the recomputing path they replace (all leaf
  hashes read and rehashed, kept as the fallback for logs without stored hashes), and the number
  of stored hashes a proof reads.
* Migration: a copy of the first log turned into the previous format (no ``nodes`` column),
  verified read-only as it is, then opened for writing (which fills the column in).

    .venv/bin/python benchmarks/bench_audit.py [--sizes 100000 1000000] [--appends 4000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from invguard.audit import AuditLog, Signer, parse_checkpoint, tree
from invguard.audit.errors import AuditError
from invguard.audit.log import (
    _COLUMNS,
    GENESIS_HASH,
    MAX_PAYLOAD_BYTES,
    Entry,
    Record,
    _check_field,
    canonical_entry_bytes,
    canonical_json,
    format_timestamp,
)
from invguard.audit.merkle import Node, leaf_hash

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def record(i: int) -> Record:
    return (
        f"service-{i % 7}",
        ("assessment.finished", "finding.recorded", "defence.applied", "gateway.alert")[i % 4],
        f"model-{i % 101}",
        {"attack": "miface", "classes": i % 40, "score": round((i % 1000) / 1000, 3), "i": i},
    )


# ---------------------------------------------------------------------------------------------
# the baseline: the previous release's append, verbatim (no tree hashes)


def _legacy_canonical_json(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _legacy_jstr(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _legacy_entry_bytes(
    seq: int, ts: str, actor: str, action: str, subject: str, payload_json: str, prev: bytes
) -> bytes:
    return (
        f'{{"action":{_legacy_jstr(action)},"actor":{_legacy_jstr(actor)},'
        f'"payload":{payload_json},"prev_hash":"{prev.hex()}","seq":{seq},'
        f'"subject":{_legacy_jstr(subject)},"timestamp":{_legacy_jstr(ts)}}}'
    ).encode()


def _legacy_payload_json(payload: object) -> str:
    text = _legacy_canonical_json(payload)
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise AuditError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes of JSON")
    return text


def legacy_append_many(log: AuditLog, records: Iterable[Record]) -> list[Entry]:
    """``AuditLog.append_many`` as it was before the stored tree (one transaction, no hashes),
    with the canonical-JSON helpers of that release (``json.dumps`` on every call)."""
    prepared = []
    for actor, action, subject, payload in records:
        payload = {} if payload is None else payload
        text = _legacy_payload_json(payload)
        prepared.append(
            (
                _check_field("actor", actor, allow_empty=False),
                _check_field("action", action, allow_empty=False),
                _check_field("subject", subject, allow_empty=True),
                text,
                json.loads(text),
            )
        )
    conn = log._conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute(
            "SELECT seq, leaf_hash FROM entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (int(last[0]), bytes(last[1])) if last else (0, GENESIS_HASH)
        rows = []
        out = []
        for actor, action, subject, text, payload in prepared:
            seq += 1
            ts = format_timestamp(log._clock())
            lh = leaf_hash(_legacy_entry_bytes(seq, ts, actor, action, subject, text, prev))
            rows.append((seq, ts, actor, action, subject, text, prev, lh))
            out.append(Entry(seq, ts, actor, action, subject, payload, prev, lh))
            prev = lh
        conn.executemany(f"INSERT INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return out


def appends_per_second(folder: Path, n: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median appends/s (wall, CPU) of ``rounds`` alternating rounds of ``n // rounds`` each."""
    sample = (7, "2025-01-31T12:00:00.000000Z", "é\u2028", "a", "", '{"k":"v"}', bytes(32))
    assert _legacy_entry_bytes(*sample) == canonical_entry_bytes(*sample)
    assert _legacy_payload_json(record(3)[3]) == canonical_json(record(3)[3])
    per_round = max(1, n // rounds)
    logs = {"stored tree": AuditLog(folder / "new.db"), "previous": AuditLog(folder / "old.db")}
    rates: dict[str, list[tuple[float, float]]] = {k: [] for k in logs}
    i = 0
    try:
        for _ in range(rounds):
            for name, log in logs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                for j in range(i, i + per_round):
                    if name == "previous":
                        legacy_append_many(log, [record(j)])
                    else:
                        log.append(*record(j))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rates[name].append((per_round / wall, per_round / max(cpu, 1e-9)))
            i += per_round
    finally:
        for log in logs.values():
            log.close()
    return {
        k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
        for k, v in rates.items()
    }


# ---------------------------------------------------------------------------------------------
# proofs


class ReadCounter:
    """Counts the stored hashes that proofs read (wraps ``tree.read_node``)."""

    def __init__(self) -> None:
        self.reads = 0
        self._real = tree.read_node

    def __enter__(self) -> ReadCounter:
        def counting(conn: sqlite3.Connection, node: Node) -> bytes | None:
            self.reads += 1
            return self._real(conn, node)

        tree.read_node = counting
        return self

    def __exit__(self, *exc: object) -> None:
        tree.read_node = self._real


def build(path: Path, n: int, *, legacy: bool = False) -> float:
    """Build a log of ``n`` entries with ``append_many`` in batches; seconds taken."""
    with AuditLog(path) as log:

        def run() -> None:
            step = 10_000
            for lo in range(0, n, step):
                batch = [record(i) for i in range(lo, min(n, lo + step))]
                if legacy:
                    legacy_append_many(log, batch)
                else:
                    log.append_many(batch)

        _, seconds = timed(run)
    return seconds


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = [timed(fn)[1] for _ in range(repeat)]
    return statistics.median(times) * 1000


def bench_proofs(path: Path, n: int, rng: random.Random, baseline_repeat: int) -> None:
    """Stored-hash proofs against the recomputing path, at tree size ``n``."""
    with AuditLog(path, readonly=True) as log:
        seqs = [rng.randint(1, n) for _ in range(30)]
        olds = [rng.randint(1, n - 1) for _ in range(30)]
        for seq in seqs[:3]:
            assert log.inclusion_proof(seq) == log._recomputed_inclusion_proof(seq)
        for old in olds[:3]:
            assert log.consistency_proof(old) == log._recomputed_consistency_proof(old)
        with ReadCounter() as counter:
            inc = [timed(functools.partial(log.inclusion_proof, s))[1] for s in seqs]
        inc_reads = counter.reads / len(seqs)
        with ReadCounter() as counter:
            con = [timed(functools.partial(log.consistency_proof, o))[1] for o in olds]
        con_reads = counter.reads / len(olds)
        old_inc = median_ms(lambda: log._recomputed_inclusion_proof(seqs[0]), baseline_repeat)
        old_con = median_ms(lambda: log._recomputed_consistency_proof(olds[0]), baseline_repeat)
        root_ms = median_ms(log.root, 30)
    inc_ms = statistics.median(inc) * 1000
    con_ms = statistics.median(con) * 1000
    print(
        f"n={n:>9,}  inclusion proof:   {inc_ms:7.3f} ms stored ({inc_reads:4.1f} hashes read, "
        f"max {max(inc) * 1000:.3f} ms)  vs {old_inc:9.1f} ms recomputed  ({old_inc / inc_ms:,.0f}x)"
    )
    print(
        f"n={n:>9,}  consistency proof: {con_ms:7.3f} ms stored ({con_reads:4.1f} hashes read, "
        f"max {max(con) * 1000:.3f} ms)  vs {old_con:9.1f} ms recomputed  ({old_con / con_ms:,.0f}x)"
    )
    print(f"n={n:>9,}  root:              {root_ms:7.3f} ms stored")


# ---------------------------------------------------------------------------------------------
# verification and migration


def bench_verify(path: Path, n: int) -> None:
    with AuditLog(path, readonly=True) as log:
        report, seconds = timed(log.verify)
        assert report.ok, report.first_problem
        assert report.size == n
        print(f"verify {n} entries (library, tree hashes checked too): {seconds:6.2f} s")
        signer = Signer.generate("bench.example/audit")
        note, seconds = timed(lambda: log.checkpoint(signer))
        print(f"checkpoint (verify + sign):                            {seconds:6.2f} s")
        report, seconds = timed(lambda: log.verify(parse_checkpoint(note), signer.verifier))
        assert report.ok
    from invguard.cli import main as cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code, seconds = timed(lambda: cli_main(["audit", "verify", "--audit-db", str(path)]))
    assert code == 0, out.getvalue()
    print(f"invguard audit verify (CLI, in-process):               {seconds:6.2f} s")


def to_previous_format(path: Path) -> None:
    """Turn a log into the previous release's format: no ``nodes`` column, the old trigger."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"DROP TRIGGER {tree.NODES_TRIGGER}")
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("ALTER TABLE entries DROP COLUMN nodes")
        conn.execute(
            "CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT "
            "RAISE(ABORT, 'audit log is append-only: UPDATE of entries refused'); END"
        )
        conn.execute("VACUUM")
    finally:
        conn.close()


def bench_migration(path: Path, folder: Path, n: int) -> None:
    old = folder / "previous-format.db"
    shutil.copyfile(path, old)
    to_previous_format(old)
    with AuditLog(old, readonly=True) as log:
        report, seconds = timed(log.verify)
        assert report.ok, report.first_problem
        print(f"previous-format log, {n} entries: verify read-only     {seconds:6.2f} s")
        _, seconds = timed(lambda: log.inclusion_proof(n // 3))
        print(f"  inclusion proof without stored hashes (fallback):   {seconds * 1000:6.1f} ms")
    _, seconds = timed(lambda: AuditLog(old).close())
    print(f"  open for writing (adds and fills the column):       {seconds:6.2f} s")
    with AuditLog(old, readonly=True) as log:
        _, seconds = timed(lambda: log.inclusion_proof(n // 3))
        assert log.verify().ok
        print(f"  inclusion proof after the migration:                {seconds * 1000:6.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--appends", type=int, default=4000, help="appends timed, per variant")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds for appends")
    parser.add_argument("--full-appends", type=int, default=200, help="appends with FULL sync")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="log sizes to prove"
    )
    parser.add_argument("--dir", default=None, help="folder for the temporary databases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the proved indices")
    args = parser.parse_args()
    if min(args.sizes) < 2:
        raise AuditError("--sizes must be at least 2")
    rng = random.Random(args.seed)
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"temporary folder: {folder}")
        rates = appends_per_second(folder, args.appends, args.rounds)
        for name, (wall, cpu) in rates.items():
            print(
                f"append, synchronous=NORMAL, {name + ':':<13} {wall:8.0f} appends/s wall, "
                f"{cpu:8.0f} per CPU second (median of {args.rounds} rounds)"
            )
        ratio = rates["stored tree"][1] / rates["previous"][1]
        print(f"  stored tree / previous (CPU): {ratio:.2f}")
        with AuditLog(folder / "full.db", synchronous="FULL") as log:
            _, seconds = timed(lambda: [log.append(*record(i)) for i in range(args.full_appends)])
        print(f"append, synchronous=FULL:  {args.full_appends / seconds:8.0f} appends/s")

        for k, n in enumerate(sorted(args.sizes)):
            path = folder / f"log-{n}.db"
            seconds = build(path, n)
            print(
                f"bulk build of {n:,} entries (append_many): {seconds:6.2f} s, "
                f"{path.stat().st_size / 1e6:.1f} MB"
            )
            bench_proofs(path, n, rng, baseline_repeat=3 if n <= 200_000 else 1)
            if k == 0:
                old = folder / "previous-build.db"
                seconds = build(old, n, legacy=True)
                print(
                    f"  the previous release's append_many, same batches: {seconds:6.2f} s, "
                    f"{old.stat().st_size / 1e6:.1f} MB (no tree hashes)"
                )
                old.unlink()
                bench_verify(path, n)
                bench_migration(path, folder, n)
            path.unlink()


if __name__ == "__main__":
    main()
