"""Several writer processes at once, and a writer killed with SIGKILL in the middle of appending."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from invguard.audit import AuditLog, mth
from tests.audit._workers import CRASH_WRITER, append_worker

WORKERS = 4
PER_WORKER = 500


def test_concurrent_writers_make_one_gapless_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"  # does not exist yet: the workers also race to create it
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [
        ctx.Process(target=append_worker, args=(str(path), w, PER_WORKER, barrier))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    with AuditLog(path, readonly=True) as log:
        entries = log.entries()
        report = log.verify()
    total = WORKERS * PER_WORKER
    assert report.ok, report.first_problem
    assert [e.seq for e in entries] == list(range(1, total + 1))
    for a, b in itertools.pairwise(entries):
        assert b.prev_hash == a.leaf_hash  # one chain, no fork
    for w in range(WORKERS):
        mine = [e.payload["i"] for e in entries if e.actor == f"worker-{w}"]
        assert mine == list(range(PER_WORKER))  # each writer's entries, in its order
    assert report.root == mth([e.canonical_bytes() for e in entries])
    assert len({e.leaf_hash for e in entries}) == total
    runs = sum(1 for a, b in itertools.pairwise(entries) if a.actor != b.actor) + 1
    assert runs > WORKERS  # the writers really interleaved (typically ~2,000 runs)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_acknowledged_entries_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    rng = random.Random(1234)
    acked: dict[int, str] = {}
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        target = rng.randint(150, 400)
        for seen, line in enumerate(proc.stdout, start=1):
            seq, digest = line.split()
            acked[int(seq)] = digest
            if seen == target:
                os.kill(proc.pid, signal.SIGKILL)  # lands in the middle of the next append
                break
        for line in proc.stdout:  # acknowledged before the kill, still in the pipe
            seq, digest = line.split()
            acked[int(seq)] = digest
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert Path(f"{path}-wal").exists()  # no clean close: the WAL still holds the entries

        with AuditLog(path, readonly=True) as log:
            report = log.verify()
            stored = {e.seq: e.leaf_hash.hex() for e in log.entries()}
        assert report.ok, report.first_problem
        assert all(stored.get(seq) == digest for seq, digest in acked.items())
        assert set(stored) == set(range(1, len(stored) + 1))
    assert len(acked) >= 450
