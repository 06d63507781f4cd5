"""Start-up time of the command line: ``invguard --help`` and ``invguard audit verify``.

Each command runs in a fresh interpreter the way the ``invguard`` console script runs it; the
figure is the median wall time of ``--runs`` runs, beside ``python -c pass`` measured in the same
run (the interpreter's own start-up) and the ratio to it; the fastest run is shown too. The audit
log is a 100-entry log in a temporary folder. One untimed run of each command comes first, and
the commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed) as an installed
package does.

    .venv/bin/python benchmarks/bench_cli.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from invguard.audit import AuditLog

SCRIPT = "import sys; from invguard.cli import main; sys.exit(main(sys.argv[1:]))"


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Seconds of each of ``runs`` runs of ``argv`` after one untimed run (it must exit 0)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        if i:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        with AuditLog(db) as log:
            for i in range(100):
                log.append("bench", "assessment.finished", f"model-{i}", {"i": i})
        cli = [sys.executable, "-c", SCRIPT]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "invguard --help": [*cli, "--help"],
            "invguard audit --help": [*cli, "audit", "--help"],
            "invguard audit verify": [*cli, "audit", "verify", "--audit-db", str(db)],
        }
        timings = {name: wall_times(argv, args.runs) for name, argv in commands.items()}
    base = statistics.median(timings["python -c pass"])
    print(f"python {platform.python_version()}, median of {args.runs} runs")
    print(f"{'command':<24} {'median s':>9} {'x python -c pass':>17} {'fastest s':>10}")
    for name, times in timings.items():
        median = statistics.median(times)
        print(f"{name:<24} {median:>9.3f} {median / base:>17.1f} {min(times):>10.3f}")


if __name__ == "__main__":
    main()
