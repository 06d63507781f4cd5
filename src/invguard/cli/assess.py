"""``invguard init``, ``invguard assess`` and ``invguard history``: configured assessments."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invguard.cli._common import EXIT_FINDINGS, EXIT_OK, SubParsers
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without the assessment engine.


def add_assess_parsers(sub: SubParsers) -> None:
    """Register ``init``, ``assess`` and ``history`` on the top-level sub-parsers."""
    p = sub.add_parser("init", help="write an example assessment configuration (invguard.yaml)")
    p.add_argument("path", nargs="?", default="invguard.yaml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("assess", help="run an assessment from a configuration file")
    p.add_argument("-c", "--config", default="invguard.yaml", help="configuration (invguard.yaml)")
    p.add_argument(
        "--fail-on",
        choices=("critical", "high", "medium", "low", "info", "none"),
        help="exit 1 when a finding is at or above this severity (default: the config's fail_on)",
    )
    p.add_argument("--executor", choices=("in-process", "ray"), default="in-process")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--out", help="report folder (default: the config's output_dir)")
    p.add_argument("--history-db", help="history database (default: the config's history_db)")
    p.add_argument("--audit-db", help="audit log (default: the config's audit_db)")
    p.add_argument("--no-audit", action="store_true", help="do not write to the audit log")
    p.add_argument("--cache-dir", default=None, help="model cache folder")
    p.add_argument(
        "--sarif-root",
        default=None,
        help="paths in the SARIF are relative to this folder (default: the git top level above "
        "the config, else the config's folder)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_assess)

    p = sub.add_parser("history", help="past assessment runs and risk scores")
    p.add_argument("--history-db", default="invguard-history.db")
    p.add_argument("--system", help="only this system")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented example assessment configuration for the built-in faces."""
    from invguard.assess.templates import EXAMPLE_CONFIG
    from invguard.report.io import write_atomic

    path = Path(args.path)
    if path.exists() and not args.force:
        raise InvalidParameterError(f"{path} already exists (use --force to overwrite it)")
    write_atomic(path, EXAMPLE_CONFIG)
    print(f"wrote {path}; run it with:  invguard assess -c {path}")
    return EXIT_OK


def _job_progress(quiet: bool) -> Callable[[int, int, Any], None]:
    """A tqdm bar over the assessment's jobs (nothing when quiet); failed jobs are written out."""
    bar: list[Any] = []

    def progress(done: int, total: int, outcome: Any) -> None:
        if quiet:
            return
        from tqdm import tqdm

        if not bar:
            bar.append(
                tqdm(total=total, desc="assessment jobs", unit="job", file=sys.stderr, disable=None)
            )
        b = bar[0]
        b.update(done - b.n)
        if outcome is not None and outcome.status != "ok":
            b.write(
                f"job {outcome.system_id}/{outcome.attack}/{outcome.seed} failed: {outcome.error}"
            )
        if done >= total:
            b.close()

    return progress


def _defense_progress(message: str) -> None:
    print(f"  defences: {message}", file=sys.stderr, flush=True)


def _sarif_root(value: str | None) -> Path | None:
    from invguard.errors import InvalidParameterError

    if value is None:
        return None
    root = Path(value)
    if not root.is_dir():
        raise InvalidParameterError(f"--sarif-root: no such folder: {value}")
    return root


def cmd_assess(args: argparse.Namespace) -> int:
    """Run (or resume) an assessment; exit 1 when the CI gate trips."""
    from invguard.assess.config import load_config
    from invguard.assess.engine import run_assessment, summary_lines
    from invguard.assess.executors import make_executor

    loaded = load_config(args.config)
    executor = make_executor(args.executor, ray_address=args.ray_address)
    try:
        assessment = run_assessment(
            loaded,
            executor=executor,
            out_dir=Path(args.out) if args.out else None,
            history_db=Path(args.history_db) if args.history_db else None,
            audit_db=Path(args.audit_db) if args.audit_db else None,
            use_audit=not args.no_audit,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            progress=_job_progress(args.quiet),
            defense_progress=None if args.quiet else _defense_progress,
            sarif_root=_sarif_root(args.sarif_root),
        )
    finally:
        executor.close()
    print("\n".join(summary_lines(assessment)))
    out = Path(args.out) if args.out else loaded.resolve(loaded.config.output_dir)
    print(f"report: {out / 'assessment.html'}  (also assessment.json, assessment.sarif)")
    threshold = args.fail_on or loaded.config.fail_on
    passed, reason = assessment.gate(threshold)
    print(f"gate (fail on {threshold}): {'passed' if passed else 'FAILED'}: {reason}")
    return EXIT_OK if passed else EXIT_FINDINGS


def cmd_history(args: argparse.Namespace) -> int:
    """List past assessment runs and each system's risk score."""
    from invguard.assess.history import HistoryStore

    path = Path(args.history_db)
    if not path.is_file():
        raise InvalidParameterError(f"history database not found: {path}")
    with HistoryStore(path) as store:
        runs = store.runs(system=args.system, limit=args.limit)
    if args.json:
        print(json.dumps([r.__dict__ for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no finished runs")
        return EXIT_OK
    for r in runs:
        systems = ", ".join(
            f"{k} {v['risk_score']:.2f} {v['risk_level']}" for k, v in sorted(r.systems.items())
        )
        print(f"run {r.id:4d}  {r.finished_at}  {r.status:10s}  {r.name}: {systems}")
    return EXIT_OK
