"""The typed records an assessment produces: one :class:`SystemResult` per system, one
:class:`Assessment` per run. The report renderers read these; nothing here runs an attack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from invguard import __version__
from invguard.assess.findings import Finding
from invguard.catalog.rules import SEVERITY_RANK, at_or_above


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
    unavailable: str | None = None  # why the system could not be assessed at all (e.g. unreachable)

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

    @property
    def complete(self) -> bool:
        """Every planned job ran and succeeded, and every system could be reached."""
        return self.jobs_failed == 0 and all(s.complete for s in self.systems)

    def incomplete_reason(self) -> str | None:
        """Why the assessment is incomplete (None when it is complete)."""
        if self.complete:
            return None
        down = [s.id for s in self.systems if s.unavailable is not None]
        parts = [f"{len(down)} system(s) could not be assessed ({', '.join(down)})"] if down else []
        if self.jobs_failed:
            parts.append(f"{self.jobs_failed} job(s) failed or could not run")
        return "assessment incomplete: " + "; ".join(parts or ["a system is incomplete"])

    def gate(self, threshold: str | None = None) -> tuple[bool, str]:
        """(passed, reason) of the CI gate at ``threshold`` (the config's ``fail_on`` if None).

        An incomplete assessment fails the gate whatever the threshold but 'none': what could not
        be measured cannot be shown to be safe.
        """
        level = threshold or self.fail_on
        if level == "none":
            return True, "gate disabled (--fail-on none)"
        passed, reason = gate_findings(self.findings, level)
        if not passed:
            return passed, reason
        incomplete = self.incomplete_reason()
        if incomplete is not None:
            return False, incomplete
        return True, reason

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON (schema ``invguard.assessment/1``; keys are only ever added)."""
        passed, reason = self.gate()
        return {
            "schema": "invguard.assessment/1",
            "name": self.name,
            "status": "complete" if self.complete else "incomplete",
            "incomplete_reason": self.incomplete_reason(),
            "gate": {"fail_on": self.fail_on, "passed": passed, "reason": reason},
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
                    "unavailable": s.unavailable,
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


def gate_findings(findings: list[Finding], level: str) -> tuple[bool, str]:
    """(passed, reason): does any finding that is not a pass reach severity ``level``?"""
    if level == "none":
        return True, "gate disabled (--fail-on none)"
    tripped = [f for f in findings if not f.passed and at_or_above(f.severity, level)]
    if tripped:
        worst = max(tripped, key=lambda f: SEVERITY_RANK[f.severity])
        return False, (
            f"{len(tripped)} finding(s) at or above '{level}' (worst: {worst.severity} {worst.id})"
        )
    return True, f"no finding at or above '{level}'"


__all__ = ["Assessment", "Gallery", "SystemResult", "gate_findings"]
