"""The assessment engine: config -> checked systems -> jobs -> findings -> risk -> reports.

``run_assessment`` reads as its stages, each a small module with typed records between them:

1. :mod:`~invguard.assess.plan`: every system is loaded and checked before any job runs, then
   planned as content-addressed jobs (system x attack x seed);
2. :mod:`~invguard.assess.run`: finished jobs are taken from the history store, the rest run on the
   executor and are stored the moment each finishes;
3. :mod:`~invguard.assess.defend`: the configured defences are evaluated (and stored);
4. :mod:`~invguard.assess.summarise`: findings and the risk score per system;
5. reports are written into a temporary folder and moved into place only when complete, then the
   run is recorded in the history and (:mod:`~invguard.assess.trail`) the audit log.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from invguard.assess.config import LoadedConfig
from invguard.assess.defend import evaluate_system_defenses
from invguard.assess.executors import Executor, InProcessExecutor
from invguard.assess.history import HistoryStore
from invguard.assess.plan import PreparedSystem, plan_jobs, prepare_systems
from invguard.assess.records import Assessment, Gallery, SystemResult
from invguard.assess.run import JobProgress, run_jobs
from invguard.assess.summarise import summarise_system
from invguard.assess.trail import AuditTrail
from invguard.defenses.evaluation import DefenseEvaluation, StepFn
from invguard.models import ModelCache, default_cache_dir
from invguard.report.assessment import render_html, render_json, render_sarif


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_assessment(
    loaded: LoadedConfig,
    *,
    executor: Executor | None = None,
    out_dir: Path | None = None,
    history_db: Path | None = None,
    audit_db: Path | None = None,
    use_audit: bool = True,
    cache_dir: Path | None = None,
    progress: JobProgress | None = None,
    defense_progress: StepFn | None = None,
    write: bool = True,
    sarif_root: Path | None = None,
) -> Assessment:
    """Run (or resume) the assessment described by ``loaded`` and write its reports (SARIF paths
    relative to ``sarif_root``, default: the git top level above the config)."""
    cfg = loaded.config
    started_clock, started = time.perf_counter(), _now()
    executor = executor or InProcessExecutor()
    cache_root = cache_dir or (
        loaded.resolve(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    )
    cache = ModelCache(cache_root)
    out = out_dir or loaded.resolve(cfg.output_dir)
    audit_path = audit_db or (loaded.resolve(cfg.audit_db) if cfg.audit_db else None)

    prepared = prepare_systems(loaded, cache)
    planned = plan_jobs(prepared, loaded, cache_root)
    trail = AuditTrail(audit_path if use_audit else None, cfg.name)
    with HistoryStore(history_db or loaded.resolve(cfg.history_db)) as store:
        try:
            run_id = store.start_run(cfg.name, str(loaded.path), loaded.digest())
            trail.started(run_id, loaded.digest(), len(planned))
            jobs = run_jobs(planned, store, executor, trail, progress)
            evaluations: dict[str, DefenseEvaluation] = {}
            for p in prepared:
                if isinstance(p, PreparedSystem) and p.system.defenses is not None:
                    evaluations[p.id] = evaluate_system_defenses(
                        loaded,
                        p.index,
                        p.system,
                        p.dataset,
                        p.built,
                        cache,
                        store,
                        defense_progress,
                    )
                    trail.defenses(p.id, evaluations[p.id])
            systems: list[SystemResult] = []
            galleries: dict[str, Gallery] = {}
            failed = 0
            for p in prepared:
                result, shown, n_failed = summarise_system(
                    p, planned, jobs, evaluations.get(p.id), store, run_id
                )
                systems.append(result)
                galleries.update(shown)
                failed += n_failed
            assessment = Assessment(
                name=cfg.name,
                run_id=run_id,
                config_path=str(loaded.path),
                config_digest=loaded.digest(),
                started=started,
                finished=_now(),
                executor=executor.name,
                fail_on=cfg.fail_on,
                systems=systems,
                jobs_total=len(planned) + sum(len(s.jobs) for s in systems if s.unavailable),
                jobs_reused=jobs.reused,
                jobs_failed=failed,
                seconds=time.perf_counter() - started_clock,
                galleries=galleries,
            )
            if write:
                trend = {s.id: store.risk_history(str(loaded.path), s.id) for s in systems}
                write_reports(assessment, out, sarif_root=sarif_root, risk_history=trend)
            _record_run(store, assessment, out)
            trail.finished(assessment)
        finally:
            trail.close()
    return assessment


def _record_run(store: HistoryStore, assessment: Assessment, out: Path) -> None:
    """The run's record in the history store: status, job counts, risk and findings per system."""
    store.finish_run(
        assessment.run_id,
        {
            "status": "complete" if assessment.complete else "incomplete",
            "jobs": assessment.to_dict()["jobs"],
            "output_dir": str(out),
        },
        {
            s.id: {"risk_score": s.risk_score, "risk_level": s.risk_level, "findings": s.counts()}
            for s in assessment.systems
        },
    )


def write_reports(
    assessment: Assessment,
    out: Path,
    *,
    sarif_root: Path | None = None,
    risk_history: Mapping[str, Sequence[tuple[int, str, float]]] | None = None,
) -> dict[str, Path]:
    """Write HTML, JSON and SARIF into ``out``: built in a temporary folder, then swapped in
    (``risk_history``: each system's past runs, :meth:`HistoryStore.risk_history`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "assessment.json").write_text(render_json(assessment), encoding="utf-8")
        (tmp / "assessment.sarif").write_text(
            render_sarif(assessment, sarif_root), encoding="utf-8"
        )
        (tmp / "assessment.html").write_text(
            render_html(assessment, risk_history), encoding="utf-8"
        )
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "html": out / "assessment.html",
        "json": out / "assessment.json",
        "sarif": out / "assessment.sarif",
    }


def summary_lines(assessment: Assessment) -> list[str]:
    """A scanner-style text summary for the terminal."""
    lines = [
        f"InvGuard {assessment.invguard_version} assessment '{assessment.name}' (run "
        f"{assessment.run_id}): {assessment.jobs_total} jobs, {assessment.jobs_reused} reused, "
        f"{assessment.jobs_failed} failed, {assessment.seconds:.1f} s"
    ]
    for s in assessment.systems:
        trend = ""
        if s.previous_risk is not None:
            delta = s.risk_score - s.previous_risk
            trend = f" (was {s.previous_risk:.2f} in run {s.previous_run}, {delta:+.2f})"
        if s.unavailable is not None:
            lines.append(f"  {s.id}: NOT ASSESSED: {s.unavailable}")
            continue
        lines.append(f"  {s.id}: risk {s.risk_score:.2f} {s.risk_level.upper()}{trend}")
        for f in s.findings:
            if f.passed:
                continue
            lines.append(f"    [{f.severity.upper():8s}] {f.rule_id} {f.summary}")
    return lines


__all__ = [
    "Assessment",
    "Gallery",
    "JobProgress",
    "SystemResult",
    "run_assessment",
    "summary_lines",
    "write_reports",
]
