"""``invguard init``, ``invguard assess`` and ``invguard history``: configured assessments.

``assess --format json`` prints the report's JSON (schema ``invguard.assessment/1``, the same as
``assessment.json``) with ``gate`` computed at the threshold in effect (``--fail-on`` or the
config's); ``--format sarif`` prints ``assessment.sarif``; ``history --format json`` prints a list
of runs (``id``, ``name``, ``config_path``, ``started_at``, ``finished_at``, ``status``:
complete or incomplete, ``systems``: risk score, level and finding counts per system).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invguard.cli._common import (
    EXIT_FINDINGS,
    EXIT_OK,
    FORMATS,
    SubParsers,
    add_format_options,
    check_format,
    emit,
    exit_codes,
    markdown_table,
    note,
)
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without the assessment engine.


def add_assess_parsers(sub: SubParsers) -> None:
    """Register ``init``, ``assess`` and ``history`` on the top-level sub-parsers."""
    p = sub.add_parser("init", help="write an example assessment configuration (invguard.yaml)")
    p.add_argument("path", nargs="?", default="invguard.yaml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser(
        "assess",
        help="run an assessment from a configuration file",
        description="Run (or resume) the assessment a configuration describes; write the HTML, "
        "JSON and SARIF reports into its output folder and print a summary (--format).",
        epilog=exit_codes(
            "a finding at or above --fail-on, or the assessment is incomplete (a job failed, or "
            "a system's endpoint could not be reached: the report says which and why)"
        ),
    )
    p.add_argument(
        "config_arg",
        nargs="?",
        metavar="CONFIG",
        help="configuration file (default invguard.yaml; the same as -c)",
    )
    p.add_argument("-c", "--config", help="configuration file (default invguard.yaml)")
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
    add_format_options(p)
    p.set_defaults(handler=cmd_assess)

    p = sub.add_parser(
        "history",
        help="past assessment runs and risk scores",
        epilog=exit_codes("not used (history only reads)"),
    )
    p.add_argument("--history-db", default="invguard-history.db")
    p.add_argument("--system", help="only this system")
    p.add_argument("--limit", type=int, default=20)
    add_format_options(p, json_alias=True)
    p.set_defaults(handler=cmd_history)


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented example assessment configuration for the built-in faces."""
    from invguard.assess.templates import EXAMPLE_CONFIG
    from invguard.report.io import write_atomic

    path = Path(args.path)
    if path.exists() and not args.force:
        raise InvalidParameterError(f"{path} already exists (use --force to overwrite it)")
    write_atomic(path, EXAMPLE_CONFIG)
    print(f"wrote {path}; run it with:  invguard assess {path}")
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


def config_path(args: argparse.Namespace) -> str:
    """CONFIG or ``-c CONFIG`` (both only when they agree), default invguard.yaml."""
    positional, option = args.config_arg, args.config
    if positional is not None and option is not None and Path(positional) != Path(option):
        raise InvalidParameterError(
            f"two configurations given: CONFIG {positional!r} and -c {option!r}; give one"
        )
    return str(positional or option or "invguard.yaml")


def cmd_assess(args: argparse.Namespace) -> int:
    """Run (or resume) an assessment; exit 1 when the CI gate trips or it is incomplete."""
    from invguard.assess.config import load_config
    from invguard.assess.engine import run_assessment
    from invguard.assess.executors import make_executor

    fmt = check_format(args, "assess", FORMATS)
    sarif_root = _sarif_root(args.sarif_root)
    loaded = load_config(config_path(args))
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
            sarif_root=sarif_root,
        )
    finally:
        executor.close()
    out = Path(args.out) if args.out else loaded.resolve(loaded.config.output_dir)
    threshold = args.fail_on or loaded.config.fail_on
    passed, reason = assessment.gate(threshold)
    gate_line = f"gate (fail on {threshold}): {'passed' if passed else 'FAILED'}: {reason}"
    report_line = f"report: {out / 'assessment.html'}  (also assessment.json, assessment.sarif)"
    emit(args, _render_assessment(assessment, fmt, threshold, sarif_root, report_line, gate_line))
    if fmt != "table":
        note(args, f"{report_line}\n{gate_line}")
    return EXIT_OK if passed else EXIT_FINDINGS


def _render_assessment(
    assessment: Any,
    fmt: str,
    threshold: str,
    sarif_root: Path | None,
    report_line: str,
    gate_line: str,
) -> str:
    """The assessment in ``fmt``: the terminal summary, the report's JSON or SARIF, or Markdown."""
    from invguard.assess.engine import summary_lines
    from invguard.report.assessment import render_sarif

    passed, reason = assessment.gate(threshold)
    if fmt == "json":
        doc = assessment.to_dict()
        doc["gate"] = {"fail_on": threshold, "passed": passed, "reason": reason}
        return json.dumps(doc, indent=2)
    if fmt == "sarif":
        return str(render_sarif(assessment, sarif_root))
    if fmt == "markdown":
        return assessment_markdown(assessment, threshold)
    return "\n".join([*summary_lines(assessment), report_line, gate_line])


def assessment_markdown(assessment: Any, threshold: str) -> str:
    """A readable Markdown summary: the gate, each system's risk, the open findings."""
    passed, reason = assessment.gate(threshold)
    lines = [
        f"# InvGuard assessment: {assessment.name}",
        "",
        f"- run {assessment.run_id}, {assessment.finished}, InvGuard {assessment.invguard_version}",
        f"- jobs: {assessment.jobs_total} ({assessment.jobs_reused} reused, "
        f"{assessment.jobs_failed} failed or not run)",
        f"- status: {'complete' if assessment.complete else 'incomplete'}",
        f"- gate (fail on {threshold}): **{'passed' if passed else 'FAILED'}**: {reason}",
        "",
        "## Systems",
        "",
    ]
    rows = [
        [
            s.id,
            "-" if s.unavailable else f"{s.risk_score:.2f}",
            "not assessed" if s.unavailable else s.risk_level,
            "yes" if s.complete else "no",
            s.unavailable or ", ".join(f"{n} {k}" for k, n in s.counts().items() if n) or "-",
        ]
        for s in assessment.systems
    ]
    lines.append(
        markdown_table(["system", "risk", "level", "complete", "findings / why not"], rows)
    )
    open_findings = [f for f in assessment.findings if not f.passed and f.severity != "info"]
    errors = [f for f in assessment.findings if f.kind == "error"]
    for title, found in (("Findings", open_findings), ("Could not run", errors)):
        if found:
            lines += ["", f"## {title}", ""]
            lines += [f"- **{f.severity}** `{f.rule_id}` {f.system}: {f.summary}" for f in found]
    return "\n".join(lines)


def cmd_history(args: argparse.Namespace) -> int:
    """List past assessment runs and each system's risk score."""
    from invguard.assess.history import HistoryStore

    fmt = check_format(args, "history", ("table", "json", "markdown"))
    path = Path(args.history_db)
    if not path.is_file():
        raise InvalidParameterError(f"history database not found: {path}")
    with HistoryStore(path) as store:
        runs = store.runs(system=args.system, limit=args.limit)
    if fmt == "json":
        emit(args, json.dumps([r.__dict__ for r in runs], indent=2))
        return EXIT_OK

    def risks(r: Any) -> str:
        return ", ".join(
            f"{k} {v['risk_score']:.2f} {v['risk_level']}" for k, v in sorted(r.systems.items())
        )

    if fmt == "markdown":
        rows = [[str(r.id), str(r.finished_at), r.status, r.name, risks(r)] for r in runs]
        head = ["run", "finished", "status", "assessment", "risk per system"]
        emit(args, "# InvGuard assessment history\n\n" + markdown_table(head, rows))
        return EXIT_OK
    if not runs:
        emit(args, "no finished runs")
        return EXIT_OK
    emit(
        args,
        "\n".join(
            f"run {r.id:4d}  {r.finished_at}  {r.status:10s}  {r.name}: {risks(r)}" for r in runs
        ),
    )
    return EXIT_OK
