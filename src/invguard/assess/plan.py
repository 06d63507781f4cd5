"""Stage 1 of an assessment: check every system, then plan its content-addressed jobs.

Every system is loaded and checked before any job runs (data, model file, class indices, defences),
so a bad configuration fails fast with the field path and leaves no report behind. Live endpoints'
posture is probed here too, and the reference evaluation model is trained (or read from the cache)
once, before workers need it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invguard.assess.availability import EndpointUnavailableError
from invguard.assess.config import ConfigError, LoadedConfig, SystemConfig
from invguard.assess.config import HttpTarget as HttpTargetConfig
from invguard.assess.defend import check_defenses
from invguard.assess.jobs import JobSpec, job_key
from invguard.assess.systems import (
    BuiltTarget,
    expand_attacks,
    load_auxiliary,
    load_data,
    prepare_system,
    prior_fingerprint,
    probe_posture,
)
from invguard.assess.tabular import (
    expand_tabular_attacks,
    is_tabular,
    tabular_fingerprint,
    tabular_spec,
)
from invguard.assess.tabular import target_info as tabular_target_info
from invguard.catalog.attacks import ATTACK_REGISTRY
from invguard.data import ImageDataset
from invguard.judges.reference import reference_evaluator
from invguard.models import ModelCache
from invguard.tabular.pipeline import TabularSpec


@dataclass
class PreparedSystem:
    """One checked system: its config (attacks expanded), data, target and what was skipped."""

    index: int
    system: SystemConfig
    dataset: ImageDataset
    built: BuiltTarget
    skipped: list[dict[str, str]]
    auxiliary_sha: str | None
    posture: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.system.id

    @property
    def fingerprint(self) -> str:
        return self.built.fingerprint

    @property
    def data_fingerprint(self) -> str:
        return self.dataset.fingerprint()

    @property
    def target_info(self) -> dict[str, Any]:
        return self.built.info

    def data_info(self) -> dict[str, Any]:
        return image_data_info(self.dataset)


def image_data_info(d: ImageDataset) -> dict[str, Any]:
    """What the reports say about an image system's private data."""
    return {
        "name": d.name,
        "description": d.description,
        "classes": d.num_classes,
        "image_shape": list(d.image_shape),
        "private_images": len(d.y_train),
    }


@dataclass
class PreparedTable:
    """One checked tabular system: its attribute-inference spec and what its result depends on."""

    index: int
    system: SystemConfig
    spec: TabularSpec
    fingerprint: str
    target_info: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    auxiliary_sha: str | None = None
    posture: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.system.id

    @property
    def data_fingerprint(self) -> str:
        return "tabular"  # the table's content is part of ``fingerprint``

    def data_info(self) -> dict[str, Any]:
        s = self.spec
        return {
            "kind": "tabular",
            "name": s.csv.name if s.csv is not None else s.dataset,
            "description": f"table; sensitive column '{s.sensitive}'",
            "sensitive": s.sensitive,
            "records_attacked": s.rows,
            "non_members": s.non_members,
        }


@dataclass
class UnavailableSystem:
    """A system whose endpoint could not be reached while it was checked: none of its jobs can
    run, so the assessment is incomplete; ``reason`` is the one-line error."""

    index: int
    system: SystemConfig
    reason: str
    data: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    posture: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.system.id

    @property
    def target_info(self) -> dict[str, Any]:
        from invguard.targets.http import redact_url

        url = getattr(self.system.target, "url", "")
        return {
            "type": self.system.target.type,
            "name": redact_url(url) if url else self.system.target.type,
            "source": redact_url(url) if url else "",
            "test_accuracy": None,
            "access": "unknown: the endpoint could not be reached",
        }

    def data_info(self) -> dict[str, Any]:
        return self.data


Prepared = PreparedSystem | PreparedTable | UnavailableSystem


@dataclass(frozen=True)
class PlannedJob:
    """A job (system x attack x seed) and the attack's position in its system's list."""

    spec: JobSpec
    attack_index: int


def _prepare_table(loaded: LoadedConfig, i: int) -> PreparedTable:
    system = expand_tabular_attacks(loaded.config.systems[i])
    try:
        spec = tabular_spec(system, f"systems[{i}]", loaded.resolve)
    except ConfigError as exc:
        raise ConfigError(f"{loaded.path}: {exc}") from exc
    return PreparedTable(
        i,
        system,
        spec,
        tabular_fingerprint(system, spec, f"{loaded.path}: systems[{i}]"),
        tabular_target_info(system, spec),
    )


def prepare_systems(loaded: LoadedConfig, cache: ModelCache) -> list[Prepared]:
    """Load and check every system of ``loaded`` (nothing runs if one is wrong).

    A system whose endpoint cannot be reached is not an error of the configuration: it becomes an
    :class:`UnavailableSystem`, and the others are assessed (the report says it is incomplete).
    """
    prepared: list[Prepared] = []
    for i in range(len(loaded.config.systems)):
        try:
            prepared.append(_prepare_one(loaded, i, cache))
        except EndpointUnavailableError as exc:
            prepared.append(_unavailable(loaded, i, str(exc)))
    images = [p for p in prepared if isinstance(p, PreparedSystem)]
    for p in images:
        if isinstance(p.system.target, HttpTargetConfig) and p.system.target.probe:
            p.posture = probe_posture(p.system.target, p.dataset, f"systems[{p.index}].target")
    for p in images:  # warm the evaluator cache once, before workers need it
        reference_evaluator(p.dataset, cache=cache)
    return prepared


def _unavailable(loaded: LoadedConfig, i: int, reason: str) -> UnavailableSystem:
    """System ``i``, whose endpoint is down: its data described, its attacks listed, none run."""
    system = loaded.config.systems[i]
    if is_tabular(system):
        system = expand_tabular_attacks(system)
        spec = tabular_spec(system, f"systems[{i}]", loaded.resolve)
        data = PreparedTable(i, system, spec, "", {}).data_info()
    else:
        data = image_data_info(load_data(system.data, f"systems[{i}].data", loaded.resolve))
    return UnavailableSystem(i, system, reason, data)


def _prepare_one(loaded: LoadedConfig, i: int, cache: ModelCache) -> PreparedSystem | PreparedTable:
    """Check system ``i``: a table's spec, or an image system's data, target and attacks."""
    if is_tabular(loaded.config.systems[i]):
        return _prepare_table(loaded, i)
    system, dataset, built = prepare_system(loaded, i, cache)
    aux_sha = None
    if system.auxiliary is not None:
        where = f"{loaded.path}: systems[{i}].auxiliary"
        aux = load_auxiliary(system.auxiliary, dataset, where, loaded.resolve)
        aux_sha = hashlib.sha256(aux.tobytes()).hexdigest()
    system, skipped = expand_attacks(system, built, dataset)
    check_defenses(system, dataset, f"{loaded.path}: systems[{i}]")
    return PreparedSystem(i, system, dataset, built, skipped, aux_sha)


def plan_jobs(prepared: list[Prepared], loaded: LoadedConfig, cache_root: Path) -> list[PlannedJob]:
    """One content-addressed job per system, attack and seed."""
    planned: list[PlannedJob] = []
    for p in prepared:
        if isinstance(p, UnavailableSystem):  # nothing can run; summarise reports why
            continue
        sys_json = p.system.model_dump(mode="json")
        for j, atk in enumerate(p.system.attacks):
            attack_desc: dict[str, Any] = {
                "name": atk.name,
                "params": atk.params,
                "budget": atk.budget.model_dump(mode="json"),
                "classes": atk.classes,
            }
            if (
                atk.name in ATTACK_REGISTRY and ATTACK_REGISTRY[atk.name].needs_prior
            ):  # the other attacks' keys stay as they were
                attack_desc["prior"] = prior_fingerprint(atk, loaded.resolve, p.auxiliary_sha)
            for seed in atk.seeds:
                key = job_key(
                    system_fingerprint=p.fingerprint,
                    data_fingerprint=p.data_fingerprint,
                    attack=attack_desc,
                    seed=seed,
                )
                spec = JobSpec(
                    key=key,
                    system_id=p.id,
                    system_index=p.index,
                    attack_index=j,
                    attack=atk.name,
                    seed=seed,
                    system=sys_json,
                    base_dir=str(loaded.base.resolve()),
                    cache_dir=str(Path(cache_root).resolve()),
                )
                planned.append(PlannedJob(spec, j))
    return planned


__all__ = [
    "PlannedJob",
    "Prepared",
    "PreparedSystem",
    "PreparedTable",
    "UnavailableSystem",
    "plan_jobs",
    "prepare_systems",
]
