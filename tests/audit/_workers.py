"""Functions run in child processes (importable by multiprocessing's spawn start method)."""

from __future__ import annotations

import time
from multiprocessing.synchronize import Barrier

from invguard.audit import AuditLog

# A writer that prints "<seq> <leaf hash>" after each append returns, until it is killed.
CRASH_WRITER = """
import sys
from invguard.audit import AuditLog

log = AuditLog(sys.argv[1])
i = 0
while True:
    e = log.append("crash-writer", "finding.recorded", f"item-{i}", {"i": i, "pad": "x" * (i % 300)})
    sys.stdout.write(f"{e.seq} {e.leaf_hash.hex()}\\n")
    sys.stdout.flush()
    i += 1
"""


def append_worker(path: str, worker: int, n: int, barrier: Barrier) -> None:
    """Wait for the others, then open (maybe creating) the log and append ``n`` entries.

    A short pause after each append lets the other writers take the lock in between (without
    it, SQLite's sleeping busy handler lets one writer keep re-taking the lock for long runs),
    so that the appends really interleave.
    """
    barrier.wait(timeout=60)
    with AuditLog(path, timeout=60) as log:
        for i in range(n):
            payload = {"w": worker, "i": i}
            log.append(f"worker-{worker}", "finding.recorded", f"w{worker}-{i}", payload)
            time.sleep(0.0005)
