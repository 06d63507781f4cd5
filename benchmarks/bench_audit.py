"""Audit log figures: appends per second (one writer) and the time to verify 100,000 entries.

Everything happens in a temporary folder (``--dir`` chooses where; the default is the system's).
The 100,000-entry log is built with ``AuditLog.append_many`` in batches, which records exactly the
entries that single appends would, then closed and verified from a fresh read-only handle.

    .venv/bin/python benchmarks/bench_audit.py [--appends 3000] [--entries 100000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from invguard.audit import AuditLog, Signer, parse_checkpoint
from invguard.audit.log import Record, Synchronous

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


def appends_per_second(path: Path, n: int, synchronous: Synchronous) -> float:
    with AuditLog(path, synchronous=synchronous) as log:
        _, seconds = timed(lambda: [log.append(*record(i)) for i in range(n)])
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000, help="single appends to time")
    parser.add_argument("--full-appends", type=int, default=300, help="appends with FULL sync")
    parser.add_argument("--entries", type=int, default=100_000, help="size of the verified log")
    parser.add_argument("--dir", default=None, help="folder for the temporary databases")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"temporary folder: {folder}")
        rate = appends_per_second(folder / "normal.db", args.appends, "NORMAL")
        print(f"append, synchronous=NORMAL (default): {rate:8.0f} appends/s ({args.appends})")
        rate_full = appends_per_second(folder / "full.db", args.full_appends, "FULL")
        print(
            f"append, synchronous=FULL:             {rate_full:8.0f} appends/s ({args.full_appends})"
        )

        big = folder / "big.db"
        with AuditLog(big) as log:

            def build() -> None:
                step = 10_000
                for lo in range(0, args.entries, step):
                    hi = min(args.entries, lo + step)
                    log.append_many(record(i) for i in range(lo, hi))

            _, seconds = timed(build)
        print(f"bulk build of {args.entries} entries (append_many): {seconds:6.2f} s")
        print(f"database size: {big.stat().st_size / 1e6:.1f} MB")

        with AuditLog(big, readonly=True) as log:
            report, seconds = timed(log.verify)
            assert report.ok, report.first_problem
            assert report.size == args.entries
            print(f"verify {args.entries} entries (library):        {seconds:6.2f} s")
            signer = Signer.generate("bench.example/audit")
            note, seconds = timed(lambda: log.checkpoint(signer))
            print(f"checkpoint (verify + sign):                 {seconds:6.2f} s")
            signed = parse_checkpoint(note)
            report, seconds = timed(lambda: log.verify(signed, signer.verifier))
            assert report.ok
            print(f"verify with checkpoint:                     {seconds:6.2f} s")
            proof, seconds = timed(lambda: log.inclusion_proof(args.entries // 3))
            assert proof.verify()
            print(f"inclusion proof (generate):                 {seconds:6.3f} s")
            cproof, seconds = timed(lambda: log.consistency_proof(args.entries // 2))
            assert cproof.verify()
            print(f"consistency proof (generate):               {seconds:6.3f} s")

        from invguard.cli import main as cli_main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code, seconds = timed(lambda: cli_main(["audit", "verify", "--audit-db", str(big)]))
        assert code == 0, out.getvalue()
        print(f"invguard audit verify (CLI, in-process):    {seconds:6.2f} s")


if __name__ == "__main__":
    main()
