"""Assessment jobs: one (system, attack, seed) each, self-contained so any executor can run them."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from invguard import __version__
from invguard.errors import InvGuardError
from invguard.targets.base import Capability

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from invguard.attacks.base import AttackResult
    from invguard.data.base import ImageDataset
    from invguard.models.cache import ModelCache
    from invguard.targets.base import Target

log = logging.getLogger(__name__)

JOB_FORMAT = 2  # 2: judged by the judge panel (verdict, calibration rows)


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job (JSON-ready, so it can travel to Ray workers)."""

    key: str
    system_id: str
    system_index: int
    attack_index: int
    attack: str
    seed: int
    system: dict[str, Any]
    base_dir: str
    cache_dir: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class JobOutcome:
    """What a job produced: metrics and reconstructions, or the reason it failed."""

    key: str
    system_id: str
    attack: str
    seed: int
    status: str  # "ok" or "failed"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    attack_summary: dict[str, Any] = field(default_factory=dict)
    target_info: dict[str, Any] = field(default_factory=dict)
    reconstructions: np.ndarray | None = None
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """JSON-ready record without the image arrays."""
        return {
            "key": self.key,
            "system": self.system_id,
            "attack": self.attack,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "metrics": self.metrics,
            "per_class": self.per_class,
            "attack_summary": self.attack_summary,
            "target": self.target_info,
            "seconds": round(self.seconds, 3),
        }

    @staticmethod
    def from_record(record: dict[str, Any], recon: bytes | None) -> JobOutcome:
        return JobOutcome(
            key=record["key"],
            system_id=record["system"],
            attack=record["attack"],
            seed=int(record["seed"]),
            status=record["status"],
            error=record.get("error"),
            metrics=record.get("metrics") or {},
            per_class=record.get("per_class") or [],
            attack_summary=record.get("attack_summary") or {},
            target_info=record.get("target") or {},
            reconstructions=unpack_images(recon) if recon else None,
            seconds=float(record.get("seconds", 0.0)),
        )


def pack_images(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x.astype(np.float16))
    return buf.getvalue()


def unpack_images(blob: bytes) -> np.ndarray:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        out: np.ndarray = npz["x"].astype(np.float32)
    return out


def job_key(
    *, system_fingerprint: str, data_fingerprint: str, attack: dict[str, Any], seed: int
) -> str:
    """Content address of a job: same model, data, attack settings and seed give the same key."""
    blob = json.dumps(
        {
            "format": JOB_FORMAT,
            "invguard": __version__,
            "target": system_fingerprint,
            "data": data_fingerprint,
            "attack": attack,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _judge_into(
    outcome: JobOutcome,
    result: AttackResult,
    dataset: ImageDataset,
    target: Target,
    cache: ModelCache,
    auxiliary: NDArray[np.float32] | None,
) -> None:
    """Metrics, every judge and the verdict of one attack result, written into ``outcome``."""
    from invguard.judges import judge_run, reference_panel
    from invguard.metrics import evaluate_inversion
    from invguard.models import train_target
    from invguard.targets import TorchTarget

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


def run_job(spec: JobSpec) -> JobOutcome:
    """Run one job; never raises for a job-level problem (the outcome says ``failed`` and why)."""
    from invguard.assess.config import SystemConfig
    from invguard.assess.systems import build_prior, build_target, load_auxiliary, load_data
    from invguard.attacks import InversionRequest
    from invguard.catalog.attacks import build_attack
    from invguard.models import ModelCache

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
        atk_cfg = system.attacks[spec.attack_index]
        where = f"systems[{spec.system_index}]"
        cache = ModelCache(spec.cache_dir)
        dataset = load_data(system.data, f"{where}.data", resolve)
        built = build_target(
            system.target,
            dataset,
            cache,
            f"{where}.target",
            resolve,
            query_budget=atk_cfg.budget.queries,
        )
        attack = build_attack(atk_cfg.name, atk_cfg.params, atk_cfg.budget)
        auxiliary = (
            load_auxiliary(system.auxiliary, dataset, f"{where}.auxiliary", resolve)
            if system.auxiliary is not None
            else None
        )
        # the generative-prior attacks' image prior, prepared (and cached) outside the attack's
        # budgets: its queries and seconds are the attacker's one-off, offline cost
        prior_started = time.perf_counter()
        prior = build_prior(
            atk_cfg, dataset, built.target, cache, resolve, auxiliary, seed=spec.seed
        )
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
