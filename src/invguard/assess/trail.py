"""The audit trail of one assessment run: start, every finished job, defence evaluations, every
finding and the end, each one entry of the tamper-evident audit log (:mod:`invguard.audit`).

Without an audit log every method is a no-op, so the stages call it unconditionally.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invguard.audit import AuditLog

if TYPE_CHECKING:
    from invguard.assess.jobs import JobOutcome
    from invguard.assess.records import Assessment
    from invguard.defenses.evaluation import DefenseEvaluation


def current_actor() -> str:
    """Who runs the assessment: ``$INVGUARD_ACTOR``, else the login name."""
    try:
        return os.environ.get("INVGUARD_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "invguard"


class AuditTrail:
    """Appends one run's events to the audit log at ``path`` (nothing when ``path`` is None)."""

    def __init__(self, path: Path | None, name: str) -> None:
        self._log = AuditLog(path) if path is not None else None
        self._actor = current_actor()
        self._name = name
        self.run_id: int | None = None

    def _append(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.append(self._actor, kind, subject, {"run_id": self.run_id, **payload})

    def started(self, run_id: int, config_sha256: str, jobs: int) -> None:
        self.run_id = run_id
        self._append(
            "assessment.started", self._name, {"config_sha256": config_sha256, "jobs": jobs}
        )

    def job(self, outcome: JobOutcome) -> None:
        self._append(
            "job.finished" if outcome.status == "ok" else "job.failed",
            f"{outcome.system_id}/{outcome.attack}/{outcome.seed}",
            {
                "job": outcome.key,
                "status": outcome.status,
                "error": outcome.error,
                "metrics": outcome.metrics,
            },
        )

    def defenses(self, system_id: str, ev: DefenseEvaluation) -> None:
        self._append(
            "defenses.evaluated",
            system_id,
            {
                "threats": {k: t.recommended for k, t in ev.threats.items()},
                "rows": [
                    {"name": r.name, "test_accuracy": r.test_accuracy, "error": r.error}
                    for r in ev.rows
                ],
            },
        )

    def finished(self, assessment: Assessment) -> None:
        for f in assessment.findings:
            self._append(
                "finding",
                f.id,
                {"severity": f.severity, "kind": f.kind, "summary": f.summary},
            )
        self._append(
            "assessment.finished",
            self._name,
            {
                "risk": {s.id: s.risk_score for s in assessment.systems},
                "jobs": assessment.to_dict()["jobs"],
            },
        )

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


__all__ = ["AuditTrail", "current_actor"]
