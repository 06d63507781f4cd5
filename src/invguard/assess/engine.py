"""The assessment engine: config -> checked systems -> jobs -> findings -> risk -> reports.

1. Every system is loaded and checked before any job runs (data, model file, class indices), so a
   bad configuration fails fast with the field path and leaves no report behind.
2. Jobs (system x attack x seed) are content-addressed; finished ones are taken from the history
   store, the rest run on the executor and are stored the moment each finishes.
3. Findings and the risk score are computed from the stored results; reports are written into a
   temporary folder and moved into place only when complete.
4. The start, every finished job, every finding and the end go to the audit log.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from invguard import __version__
from invguard.assess.config import HttpTarget as HttpTargetConfig
from invguard.assess.config import LoadedConfig
from invguard.assess.defend import check_defenses, evaluate_system_defenses
from invguard.assess.executors import Executor, InProcessExecutor
from invguard.assess.findings import (
    SEVERITY_RANK,
    Finding,
    Leakage,
    at_or_above,
    control_findings,
    failed_job_finding,
    measured_finding,
    posture_findings,
    risk_level,
    risk_score,
)
from invguard.assess.history import HistoryStore
from invguard.assess.jobs import JobOutcome, JobSpec, job_key
from invguard.assess.registry import ATTACK_REGISTRY
from invguard.assess.systems import (
    expand_attacks,
    load_auxiliary,
    prepare_system,
    prior_fingerprint,
    probe_posture,
)
from invguard.defenses.evaluation import DefenseEvaluation, StepFn
from invguard.models import ModelCache, default_cache_dir

log = logging.getLogger(__name__)

JobProgress = Callable[[int, int, JobOutcome | None], None]


@dataclass(frozen=True)
class Gallery:
    """Reconstructions of one measured finding beside the nearest private image of each class."""

    reconstructions: np.ndarray
    nearest: np.ndarray
    names: list[str]
    hits: list[bool]


@dataclass
class SystemResult:
    id: str
    name: str
    owner: str
    target: dict[str, Any]
    data: dict[str, Any]
    risk_score: float
    risk_level: str
    previous_risk: float | None
    previous_run: int | None
    findings: list[Finding]
    controls: list[dict[str, Any]]
    posture: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    jobs: list[dict[str, Any]]
    complete: bool
    defenses: dict[str, Any] | None = None  # the defence evaluation (DefenseEvaluation.to_dict())

    @property
    def highest_severity(self) -> str:
        active = [f.severity for f in self.findings if not f.passed]
        return max(active, key=lambda s: SEVERITY_RANK[s], default="info")

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(SEVERITY_RANK, 0)
        for f in self.findings:
            if not f.passed:
                out[f.severity] += 1
        return out


@dataclass
class Assessment:
    """The result of one assessment run; :mod:`invguard.report` renders it."""

    name: str
    run_id: int
    config_path: str
    config_digest: str
    started: str
    finished: str
    executor: str
    fail_on: str
    systems: list[SystemResult]
    jobs_total: int
    jobs_reused: int
    jobs_failed: int
    seconds: float
    invguard_version: str = __version__
    galleries: dict[str, Gallery] = field(default_factory=dict, repr=False)

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.systems for f in s.findings]

    def gate(self, threshold: str | None = None) -> tuple[bool, str]:
        """(passed, reason) of the CI gate at ``threshold`` (the config's ``fail_on`` if None)."""
        level = threshold or self.fail_on
        if level == "none":
            return True, "gate disabled (--fail-on none)"
        tripped = [f for f in self.findings if not f.passed and at_or_above(f.severity, level)]
        if tripped:
            worst = max(tripped, key=lambda f: SEVERITY_RANK[f.severity])
            return False, (
                f"{len(tripped)} finding(s) at or above '{level}' (worst: {worst.severity} "
                f"{worst.id})"
            )
        if self.jobs_failed:
            return False, f"assessment incomplete: {self.jobs_failed} job(s) failed"
        return True, f"no finding at or above '{level}'"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "invguard.assessment/1",
            "name": self.name,
            "run_id": self.run_id,
            "config": {"path": self.config_path, "sha256": self.config_digest},
            "started": self.started,
            "finished": self.finished,
            "executor": self.executor,
            "fail_on": self.fail_on,
            "invguard_version": self.invguard_version,
            "jobs": {
                "total": self.jobs_total,
                "reused": self.jobs_reused,
                "failed": self.jobs_failed,
            },
            "seconds": round(self.seconds, 3),
            "systems": [
                {
                    "id": s.id,
                    "name": s.name,
                    "owner": s.owner,
                    "target": s.target,
                    "data": s.data,
                    "risk_score": s.risk_score,
                    "risk_level": s.risk_level,
                    "previous_risk": s.previous_risk,
                    "previous_run": s.previous_run,
                    "complete": s.complete,
                    "highest_severity": s.highest_severity,
                    "finding_counts": s.counts(),
                    "controls": s.controls,
                    "posture": s.posture,
                    "skipped_attacks": s.skipped,
                    "jobs": s.jobs,
                    "defense_evaluation": s.defenses,
                    "findings": [f.to_dict() for f in s.findings],
                }
                for s in self.systems
            ],
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _actor() -> str:
    try:
        return os.environ.get("INVGUARD_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "invguard"


@dataclass
class _Planned:
    spec: JobSpec
    attack_index: int


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
) -> Assessment:
    """Run (or resume) the assessment described by ``loaded`` and write its reports."""
    from invguard.api import reference_evaluator

    cfg = loaded.config
    started_clock = time.perf_counter()
    started = _now()
    executor = executor or InProcessExecutor()
    cache_root = cache_dir or (
        loaded.resolve(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    )
    cache = ModelCache(cache_root)
    out = out_dir or loaded.resolve(cfg.output_dir)
    history_path = history_db or loaded.resolve(cfg.history_db)
    audit_path = audit_db or (loaded.resolve(cfg.audit_db) if cfg.audit_db else None)

    # 1. check every system before running anything; probe live endpoints' posture
    prepared = []
    skipped: dict[str, list[dict[str, str]]] = {}
    auxiliary_sha: dict[str, str | None] = {}
    for i in range(len(cfg.systems)):
        system, dataset, built = prepare_system(loaded, i, cache)
        auxiliary_sha[system.id] = None
        if system.auxiliary is not None:
            aux = load_auxiliary(
                system.auxiliary, dataset, f"{loaded.path}: systems[{i}].auxiliary", loaded.resolve
            )
            auxiliary_sha[system.id] = hashlib.sha256(aux.tobytes()).hexdigest()
        system, skipped[system.id] = expand_attacks(system, built, dataset)
        check_defenses(system, dataset, f"{loaded.path}: systems[{i}]")
        prepared.append((system, dataset, built))
    posture: dict[str, list[dict[str, Any]]] = {}
    for index, (system, dataset, _) in enumerate(prepared):
        if isinstance(system.target, HttpTargetConfig) and system.target.probe:
            posture[system.id] = probe_posture(system.target, dataset, f"systems[{index}].target")
    for _, dataset, _ in prepared:  # warm the evaluator cache once, before workers need it
        reference_evaluator(dataset, cache=cache)

    # 2. plan jobs
    planned: list[_Planned] = []
    for index, (system, dataset, built) in enumerate(prepared):
        sys_json = system.model_dump(mode="json")
        for j, atk in enumerate(system.attacks):
            attack_desc: dict[str, Any] = {
                "name": atk.name,
                "params": atk.params,
                "budget": atk.budget.model_dump(mode="json"),
                "classes": atk.classes,
            }
            if ATTACK_REGISTRY[atk.name].needs_prior:  # the other attacks' keys stay as they were
                attack_desc["prior"] = prior_fingerprint(
                    atk, loaded.resolve, auxiliary_sha[system.id]
                )
            for seed in atk.seeds:
                key = job_key(
                    system_fingerprint=built.fingerprint,
                    data_fingerprint=dataset.fingerprint(),
                    attack=attack_desc,
                    seed=seed,
                )
                planned.append(
                    _Planned(
                        JobSpec(
                            key=key,
                            system_id=system.id,
                            system_index=index,
                            attack_index=j,
                            attack=atk.name,
                            seed=seed,
                            system=sys_json,
                            base_dir=str(loaded.base.resolve()),
                            cache_dir=str(Path(cache_root).resolve()),
                        ),
                        j,
                    )
                )

    audit = None
    if use_audit and audit_path is not None:
        from invguard.audit import AuditLog

        audit = AuditLog(audit_path)
    actor = _actor()
    with HistoryStore(history_path) as store:
        run_id = store.start_run(cfg.name, str(loaded.path), loaded.digest())
        if audit is not None:
            audit.append(
                actor,
                "assessment.started",
                cfg.name,
                {"run_id": run_id, "config_sha256": loaded.digest(), "jobs": len(planned)},
            )
        outcomes: dict[str, JobOutcome] = {}
        todo: list[JobSpec] = []
        for p in planned:
            if p.spec.key in outcomes:
                continue
            prior = store.finished_job(p.spec.key)
            if prior is not None:
                outcomes[p.spec.key] = prior
            else:
                todo.append(p.spec)
        reused = len(outcomes)
        done = reused
        if progress is not None:
            progress(done, len(planned), None)
        specs_by_key = {s.key: s for s in todo}
        for outcome in executor.run(todo):
            store.save_job(specs_by_key[outcome.key], outcome)
            outcomes[outcome.key] = outcome
            done += 1
            if audit is not None:
                audit.append(
                    actor,
                    "job.finished" if outcome.status == "ok" else "job.failed",
                    f"{outcome.system_id}/{outcome.attack}/{outcome.seed}",
                    {
                        "run_id": run_id,
                        "job": outcome.key,
                        "status": outcome.status,
                        "error": outcome.error,
                        "metrics": outcome.metrics,
                    },
                )
            if progress is not None:
                progress(done, len(planned), outcome)

        # 3. defence evaluations (stored, so a second run reuses them)
        evaluations: dict[str, DefenseEvaluation] = {}
        for index, (system, dataset, built) in enumerate(prepared):
            if system.defenses is None:
                continue
            evaluations[system.id] = evaluate_system_defenses(
                loaded, index, system, dataset, built, cache, store, defense_progress
            )
            if audit is not None:
                ev = evaluations[system.id]
                audit.append(
                    actor,
                    "defenses.evaluated",
                    system.id,
                    {
                        "run_id": run_id,
                        "threats": {k: t.recommended for k, t in ev.threats.items()},
                        "rows": [
                            {"name": r.name, "test_accuracy": r.test_accuracy, "error": r.error}
                            for r in ev.rows
                        ],
                    },
                )

        # 4. findings and risk per system
        systems: list[SystemResult] = []
        galleries: dict[str, Gallery] = {}
        failed = 0
        for system, dataset, built in prepared:
            findings: list[Finding] = []
            leaks: list[Leakage] = []
            job_rows: list[dict[str, Any]] = []
            complete = True
            for j, atk in enumerate(system.attacks):
                info = ATTACK_REGISTRY[atk.name]
                mine = [
                    p.spec for p in planned if p.spec.system_id == system.id and p.attack_index == j
                ]
                ok = [outcomes[s.key] for s in mine if outcomes[s.key].status == "ok"]
                for s in mine:
                    o = outcomes[s.key]
                    job_rows.append(
                        {
                            "key": s.key,
                            "attack": s.attack,
                            "seed": s.seed,
                            "status": o.status,
                            "error": o.error,
                            "reused": s.key not in specs_by_key,
                            "seconds": round(o.seconds, 3),
                            "queries": o.attack_summary.get("queries"),
                        }
                    )
                    if o.status != "ok":
                        failed += 1
                        complete = False
                        findings.append(
                            failed_job_finding(system.id, s.attack, s.seed, o.error or "", s.key)
                        )
                if not ok:
                    continue
                finding, leak = measured_finding(
                    system=system.id,
                    rule_id=info.rule_id,
                    title=info.title,
                    attack=atk.name,
                    access=info.access,
                    outcomes=[o.record() for o in ok],
                    num_classes=dataset.num_classes,
                )
                if info.needs_prior:  # the generator whose latent space was searched
                    used = (ok[0].attack_summary.get("extra") or {}).get("prior") or {}
                    finding.evidence["prior"] = used.get("name")
                    if used.get("source"):
                        finding.evidence["prior_source"] = used["source"]
                threat = (
                    evaluations[system.id].threat_for(info.access)
                    if system.id in evaluations
                    else None
                )
                if threat is not None and leak.significant:
                    finding.recommendation = f"{threat.recommendation} {finding.recommendation}"
                    finding.evidence["defense_evaluation"] = threat.to_dict()
                findings.append(finding)
                leaks.append(leak)
                first = ok[0]
                if first.reconstructions is not None:
                    nearest = np.asarray([r["nearest_private"] for r in first.per_class])
                    galleries[finding.id] = Gallery(
                        first.reconstructions,
                        dataset.x_train[nearest],
                        [str(r["name"]) for r in first.per_class],
                        [bool(r.get("verdict_top1", r["top1"])) for r in first.per_class],
                    )
            measured_sev = max(
                (f.severity for f in findings if f.kind == "measured"),
                key=lambda s: SEVERITY_RANK[s],
                default="info",
            )
            controls = [c.model_dump(mode="json") for c in system.controls]
            pos_findings, measured_missing = posture_findings(system.id, posture.get(system.id, []))
            findings.extend(pos_findings)
            ctl_findings, _ = control_findings(system.id, controls, measured_sev)
            findings.extend(ctl_findings)
            declared_missing = {c["id"] for c in controls if c["status"] == "missing"}
            missing = len(declared_missing | measured_missing)
            findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.passed, f.id))
            score = risk_score(leaks, missing)
            prev = store.previous_risk(system.id, run_id)
            systems.append(
                SystemResult(
                    id=system.id,
                    name=system.name or system.id,
                    owner=system.owner,
                    target=built.info,
                    data={
                        "name": dataset.name,
                        "description": dataset.description,
                        "classes": dataset.num_classes,
                        "image_shape": list(dataset.image_shape),
                        "private_images": len(dataset.y_train),
                    },
                    risk_score=score,
                    risk_level=risk_level(score),
                    previous_risk=None if prev is None else prev[1],
                    previous_run=None if prev is None else prev[0],
                    findings=findings,
                    controls=controls,
                    posture=posture.get(system.id, []),
                    skipped=skipped.get(system.id, []),
                    jobs=job_rows,
                    complete=complete,
                    defenses=evaluations[system.id].to_dict() if system.id in evaluations else None,
                )
            )

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
            jobs_total=len(planned),
            jobs_reused=reused,
            jobs_failed=failed,
            seconds=time.perf_counter() - started_clock,
            galleries=galleries,
        )
        # 5. reports, then the run record and the audit trail
        if write:
            write_reports(assessment, out)
        store.finish_run(
            run_id,
            {
                "status": "complete" if failed == 0 else "incomplete",
                "jobs": assessment.to_dict()["jobs"],
                "output_dir": str(out),
            },
            {
                s.id: {
                    "risk_score": s.risk_score,
                    "risk_level": s.risk_level,
                    "findings": s.counts(),
                }
                for s in systems
            },
        )
        if audit is not None:
            for f in assessment.findings:
                audit.append(
                    actor,
                    "finding",
                    f.id,
                    {
                        "run_id": run_id,
                        "severity": f.severity,
                        "kind": f.kind,
                        "summary": f.summary,
                    },
                )
            audit.append(
                actor,
                "assessment.finished",
                cfg.name,
                {
                    "run_id": run_id,
                    "risk": {s.id: s.risk_score for s in systems},
                    "jobs": assessment.to_dict()["jobs"],
                },
            )
            audit.close()
    return assessment


def write_reports(assessment: Assessment, out: Path) -> dict[str, Path]:
    """Write HTML, JSON and SARIF into ``out``: built in a temporary folder, then swapped in."""
    from invguard.report.assessment import render_html, render_json, render_sarif

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "assessment.json").write_text(render_json(assessment), encoding="utf-8")
        (tmp / "assessment.sarif").write_text(render_sarif(assessment), encoding="utf-8")
        (tmp / "assessment.html").write_text(render_html(assessment), encoding="utf-8")
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
        lines.append(f"  {s.id}: risk {s.risk_score:.2f} {s.risk_level.upper()}{trend}")
        for f in s.findings:
            if f.passed:
                continue
            lines.append(f"    [{f.severity.upper():8s}] {f.rule_id} {f.summary}")
    return lines


__all__ = ["Assessment", "SystemResult", "run_assessment", "summary_lines", "write_reports"]
