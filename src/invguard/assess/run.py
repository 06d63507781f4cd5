"""Stage 2 of an assessment: run the planned jobs that the history store does not already hold.

Finished jobs are taken from the store (a second run of the same config reuses them); the rest run
on the executor and each is stored, and audited, the moment it finishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from invguard.assess.executors import Executor
from invguard.assess.history import HistoryStore
from invguard.assess.jobs import JobOutcome, JobSpec
from invguard.assess.plan import PlannedJob
from invguard.assess.trail import AuditTrail

JobProgress = Callable[[int, int, JobOutcome | None], None]


@dataclass(frozen=True)
class JobRun:
    """Every planned job's outcome, and which keys ran now (the others were reused)."""

    outcomes: dict[str, JobOutcome]
    ran: frozenset[str]

    @property
    def reused(self) -> int:
        return len(self.outcomes) - len(self.ran)


def run_jobs(
    planned: list[PlannedJob],
    store: HistoryStore,
    executor: Executor,
    trail: AuditTrail,
    progress: JobProgress | None = None,
) -> JobRun:
    """Reuse the stored outcomes, run the rest on ``executor``, store each as it finishes."""
    outcomes: dict[str, JobOutcome] = {}
    specs_by_key: dict[str, JobSpec] = {}  # to run, in plan order; a repeated key runs once
    for p in planned:
        if p.spec.key in outcomes or p.spec.key in specs_by_key:
            continue
        stored = store.finished_job(p.spec.key)
        if stored is not None:
            outcomes[p.spec.key] = stored
        else:
            specs_by_key[p.spec.key] = p.spec
    done = len(outcomes)
    if progress is not None:
        progress(done, len(planned), None)
    for outcome in executor.run(list(specs_by_key.values())):
        store.save_job(specs_by_key[outcome.key], outcome)
        outcomes[outcome.key] = outcome
        done += 1
        trail.job(outcome)
        if progress is not None:
            progress(done, len(planned), outcome)
    return JobRun(outcomes, frozenset(specs_by_key))


__all__ = ["JobProgress", "JobRun", "run_jobs"]
