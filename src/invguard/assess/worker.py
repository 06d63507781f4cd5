"""The worker side of an assessment job: build the system, run the attack, judge the result.

``run_job`` is self-contained (it reads only its :class:`~invguard.assess.jobs.JobSpec`), so any
executor can run it, in this process or on a Ray worker.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.assess.config import SystemConfig
from invguard.assess.jobs import JobOutcome, JobSpec
from invguard.assess.systems import (
    BuiltTarget,
    build_prior,
    build_target,
    load_auxiliary,
    load_data,
)
from invguard.assess.tabular import is_tabular, run_tabular_job, tabular_spec
from invguard.assess.tabular import target_info as tabular_target_info
from invguard.attacks import InversionRequest
from invguard.attacks.base import AttackResult
from invguard.catalog.attacks import build_attack
from invguard.data.base import ImageDataset
from invguard.errors import InvGuardError
from invguard.judges import judge_run, reference_panel
from invguard.metrics import evaluate_inversion
from invguard.models import ModelCache, train_target
from invguard.targets import Capability, Target, TorchTarget

log = logging.getLogger(__name__)


def _judge_into(
    outcome: JobOutcome,
    result: AttackResult,
    dataset: ImageDataset,
    target: Target,
    cache: ModelCache,
    auxiliary: NDArray[np.float32] | None,
) -> None:
    """Metrics, every judge and the verdict of one attack result, written into ``outcome``."""
    panel, evaluator, _ = reference_panel(dataset, cache=cache, public=auxiliary)
    metrics = evaluate_inversion(result, evaluator, dataset)
    surrogate = None
    if Capability.GRADIENTS not in target.capabilities:
        ref = train_target(dataset, "mlp", cache=cache)
        surrogate = TorchTarget(ref.model, input_shape=dataset.image_shape)
    judgement = judge_run(
        panel,
        dataset,
        result.reconstructions,
        result.classes,
        target,
        surrogate=surrogate,
        public=auxiliary,
    )
    names = dataset.class_names
    per_class = metrics.per_class()
    for row, extra in zip(per_class, judgement.per_class(), strict=True):
        row["name"] = names[row["class"]]
        row["eval_predicted_name"] = names[row["eval_predicted"]]
        row.update(extra)
    outcome.status = "ok"
    j = judgement.summary()
    outcome.metrics = {
        **metrics.summary(),
        "verdict_top1": j["verdict_top1"],
        "verdict_top5": j["verdict_top5"],
        "judgement": j,
    }
    outcome.per_class = per_class


def _attack_into(
    outcome: JobOutcome,
    spec: JobSpec,
    system: SystemConfig,
    dataset: ImageDataset,
    built: BuiltTarget,
    cache: ModelCache,
    resolve: Any,
) -> None:
    """Run the image system's attack (with its image prior) and judge the result into ``outcome``."""
    atk_cfg = system.attacks[spec.attack_index]
    where = f"systems[{spec.system_index}]"
    attack = build_attack(atk_cfg.name, atk_cfg.params, atk_cfg.budget)
    auxiliary = (
        load_auxiliary(system.auxiliary, dataset, f"{where}.auxiliary", resolve)
        if system.auxiliary is not None
        else None
    )
    # the generative-prior attacks' image prior, prepared (and cached) outside the attack's
    # budgets: its queries and seconds are the attacker's one-off, offline cost
    prior_started = time.perf_counter()
    prior = build_prior(atk_cfg, dataset, built.target, cache, resolve, auxiliary, seed=spec.seed)
    prior_seconds = time.perf_counter() - prior_started
    request = InversionRequest(
        classes=atk_cfg.classes,
        auxiliary=auxiliary,
        max_seconds=atk_cfg.budget.seconds,
        prior=prior,
    )
    result = attack.run(built.target, request, rng=spec.seed)
    _judge_into(outcome, result, dataset, built.target, cache, auxiliary)
    outcome.attack_summary = result.summary()
    if prior is not None:
        outcome.attack_summary["prior_seconds"] = round(prior_seconds, 3)
    outcome.target_info = built.info
    outcome.reconstructions = result.reconstructions


def run_job(spec: JobSpec) -> JobOutcome:
    """Run one job; never raises for a job-level problem (the outcome says ``failed`` and why)."""
    started = time.perf_counter()
    outcome = JobOutcome(
        key=spec.key, system_id=spec.system_id, attack=spec.attack, seed=spec.seed, status="failed"
    )
    base = Path(spec.base_dir)

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    built = None
    try:
        system = SystemConfig.model_validate(spec.system)
        where = f"systems[{spec.system_index}]"
        if is_tabular(system):
            table = tabular_spec(system, where, resolve)
            run_tabular_job(system, table, outcome)
            outcome.target_info = tabular_target_info(system, table)
        else:
            cache = ModelCache(spec.cache_dir)
            dataset = load_data(system.data, f"{where}.data", resolve)
            budget = system.attacks[spec.attack_index].budget.queries
            built = build_target(
                system.target, dataset, cache, f"{where}.target", resolve, query_budget=budget
            )
            _attack_into(outcome, spec, system, dataset, built, cache, resolve)
    except (InvGuardError, ValueError) as exc:
        outcome.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except Exception as exc:  # a bug or an environment failure: keep the job's reason, go on
        log.error("job %s failed:\n%s", spec.key[:12], traceback.format_exc())
        outcome.error = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        if built is not None:
            if outcome.status != "ok":
                outcome.attack_summary = {"queries": built.target.queries}
            close = getattr(built.target, "close", None)
            if callable(close):
                close()
    outcome.seconds = time.perf_counter() - started
    return outcome


__all__ = ["run_job"]
