"""Defence evaluation inside the assessment: a system's ``defenses:`` section, measured.

Config entries become defence objects here (with one-line errors naming the parameter); the attack
suites come from the system's own attacks (white-box ones against training-time defences, the others
against output defences), or from the registry's defaults when the system lists none of a kind (for
the white-box kind the ``auto`` rule: IF-GMI for a convolutional model, MI-FACE otherwise).
Results are stored in the history file under a content address, so a second run reuses them.

The generative-prior attacks' image priors depend on the public data only, so each is prepared once
and shared by the undefended and every defended model; PLG-MI's conditional GAN is pseudo-labelled
by and trained against the model it attacks, so it is prepared for each model (cached by the
model's weights).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from invguard import __version__
from invguard.assess.config import (
    AttackConfig,
    BuiltinAuxiliary,
    ConfigError,
    DefensesConfig,
    LoadedConfig,
    PytorchTarget,
    SystemConfig,
)
from invguard.assess.systems import (
    BuiltTarget,
    build_prior,
    load_auxiliary,
    load_data,
    prior_fingerprint,
)
from invguard.catalog.attacks import ATTACK_REGISTRY, auto_white_box, build_attack
from invguard.catalog.defenses import (
    DEFAULT_OUTPUT,
    DEFAULT_TRAINING,
    build_output_defense,
    build_training_defense,
)
from invguard.defenses.evaluation import DefenseEvaluation, PriorFn, StepFn, evaluate_defenses
from invguard.defenses.training import (
    Architecture,
    UserArchitecture,
    arch_name,
    load_att_faces_public,
)
from invguard.errors import InvalidParameterError
from invguard.judges import JudgePanel, is_face_data, reference_panel

if TYPE_CHECKING:
    from invguard.assess.history import HistoryStore
    from invguard.attacks.base import Attack
    from invguard.data import ImageDataset
    from invguard.metrics import Evaluator
    from invguard.models import ModelCache
    from invguard.priors import ImagePrior
    from invguard.targets import Target

EVALUATION_FORMAT = 2  # judged by the judge panel's verdict


def attack_suites(
    system: SystemConfig,
    built: BuiltTarget,
    has_auxiliary: bool,
    dataset: ImageDataset | None = None,
) -> tuple[dict[str, Attack], dict[str, Attack]]:
    """(white-box, black-box) attacks for the evaluation: the system's own attacks of each kind
    (with their params and budgets), or the registry's defaults for a kind the system lists none of:
    for the white-box kind the one ``auto`` picks (IF-GMI for a convolutional model when it can get
    an image prior, MI-FACE otherwise), for the black-box kind every one the data allow.
    """

    white: dict[str, Attack] = {}
    black: dict[str, Attack] = {}
    for atk in system.attacks:
        if atk.name not in ATTACK_REGISTRY:  # "auto" is expanded before this is called
            continue
        info = ATTACK_REGISTRY[atk.name]
        budget = atk.budget if info.iterations_field or atk.budget.iterations is None else None
        suite = white if info.access == "white-box" else black
        suite.setdefault(atk.name, build_attack(atk.name, atk.params, budget))
    listed = {
        ATTACK_REGISTRY[a.name].access == "white-box"
        for a in system.attacks
        if a.name in ATTACK_REGISTRY
    }
    model = getattr(built.target, "model", None)
    white_default, _ = auto_white_box(
        model if isinstance(model, nn.Module) else None,
        faces=dataset is not None and is_face_data(dataset),
        has_auxiliary=has_auxiliary,
    )
    for name, info in ATTACK_REGISTRY.items():
        is_white = info.access == "white-box"
        if is_white in listed or (info.needs_auxiliary and not has_auxiliary):
            continue  # the system chose its own attacks of this kind, or the data are missing
        if is_white and (
            name != white_default or not frozenset(info.cls.requires) <= built.target.capabilities
        ):
            continue
        (white if is_white else black).setdefault(name, build_attack(name, {}, None))
    return white, black


def _attack_configs(system: SystemConfig, attacks: dict[str, Attack]) -> dict[str, AttackConfig]:
    """The config entry of each attack of a suite (a default one for a registry default)."""

    out = {a.name: a for a in reversed(system.attacks)}  # the first entry of a name wins
    return {name: out.get(name) or AttackConfig(name=name) for name in attacks}


def prior_provider(
    system: SystemConfig,
    dataset: ImageDataset,
    attacks: dict[str, Attack],
    cache: ModelCache,
    resolve: Any,
    auxiliary_images: np.ndarray | None,
    seed: int,
) -> PriorFn:
    """``prior(attack, target)`` for :func:`~invguard.defenses.evaluation.evaluate_defenses`: the
    image prior of each generative-prior attack, prepared on first use and shared by every model
    (it depends on the public data only), except PLG-MI's, prepared for each model it attacks."""

    configs = _attack_configs(system, attacks)
    shared: dict[str, ImagePrior | None] = {}

    def prior(name: str, target: Target) -> ImagePrior | None:
        atk = configs.get(name)
        if atk is None or not ATTACK_REGISTRY[name].needs_prior:
            return None
        if atk.name == "plg":
            return build_prior(atk, dataset, target, cache, resolve, auxiliary_images, seed=seed)
        key = atk.prior or "auto"
        if key not in shared:
            shared[key] = build_prior(
                atk, dataset, target, cache, resolve, auxiliary_images, seed=seed
            )
        return shared[key]

    return prior


def prior_fingerprints(
    system: SystemConfig, attacks: dict[str, Attack], resolve: Any, auxiliary_sha: str | None
) -> dict[str, Any]:
    """What the suite's image priors depend on (for the evaluation's content address)."""

    return {
        name: prior_fingerprint(atk, resolve, auxiliary_sha)
        for name, atk in sorted(_attack_configs(system, attacks).items())
        if ATTACK_REGISTRY[name].needs_prior
    }


def public_data_for(
    defenses: DefensesConfig, system: SystemConfig, dataset: ImageDataset, where: str, resolve: Any
) -> ImageDataset | None:
    """Labelled public data for transfer learning: ``defenses.public_data``, or the built-in public
    faces when the system's auxiliary data are ``att-faces-public10``."""

    if defenses.public_data is not None:
        return load_data(defenses.public_data, f"{where}.public_data", resolve)
    if isinstance(system.auxiliary, BuiltinAuxiliary) and dataset.name.endswith("private30"):
        h, w = dataset.image_shape[1:]
        return load_att_faces_public((w, h))
    return None


def evaluation_key(
    *,
    system_fingerprint: str,
    data_fingerprint: str,
    defenses: DefensesConfig,
    attacks: dict[str, Attack],
    arch: str | None,
    auxiliary: str | None,
    priors: dict[str, Any] | None = None,
) -> str:
    """Content address of a defence evaluation (same model, data, defences, attacks and image
    priors: same key)."""
    parts: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "invguard": __version__,
        "target": system_fingerprint,
        "data": data_fingerprint,
        "defenses": defenses.model_dump(mode="json"),
        "attacks": {k: repr(v) for k, v in sorted(attacks.items())},
        "arch": arch,
        "auxiliary": auxiliary,
    }
    if priors:  # only with a generative-prior attack: the other evaluations keep their keys
        parts["priors"] = priors
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def target_arch(system: SystemConfig, resolve: Any = None) -> Architecture | None:
    """The architecture a training-time defence retrains: a reference one, the user's factory
    (imported from the config's folder, as when the model is loaded), or None (not a PyTorch model
    with an architecture: a torch.export program, ONNX, scikit-learn, a remote API)."""

    t = system.target
    if not isinstance(t, PytorchTarget):
        return None
    if t.reference is not None:
        return t.reference.arch
    if t.factory is not None:
        folder = resolve(Path(".")) if resolve is not None else None
        return UserArchitecture(t.factory, dict(t.kwargs), None if folder is None else str(folder))
    return t.arch


def no_retraining_reason(system: SystemConfig) -> str | None:
    """Why training-time defences are skipped for this system (None: they are not skipped)."""

    t = system.target
    if isinstance(t, PytorchTarget) and t.program is not None:
        return (
            "a torch.export program carries no architecture to retrain; give the weights as "
            "'model' with the 'factory' that builds your model to measure training-time defences"
        )
    return None


def _arch_key(system: SystemConfig, resolve: Any) -> str | None:
    """The architecture for the evaluation's content address (a factory's with its source)."""
    arch = target_arch(system, resolve)
    if isinstance(arch, UserArchitecture):
        return f"{arch_name(arch)}:{arch.source_fingerprint()}"
    return None if arch is None else arch_name(arch)


def check_defenses(system: SystemConfig, dataset: ImageDataset, where: str) -> None:
    """Fail fast on a defence that cannot work on this system (raises ``ConfigError``)."""

    d = system.defenses
    if d is None:
        return
    if d.training and target_arch(system) is None and no_retraining_reason(system) is None:
        raise ConfigError(
            f"{where}.defenses.training: training-time defences retrain the model, which needs a "
            "'pytorch' target with 'factory' or 'arch' (or 'reference'); list output defences only"
        )
    for i, o in enumerate(d.output):
        try:
            build_output_defense(o.name, o.params, o.steps).transform(dataset.num_classes)
        except (InvalidParameterError, ValueError) as exc:
            raise ConfigError(f"{where}.defenses.output[{i}]: {exc}") from exc


def run_system_defenses(
    system: SystemConfig,
    dataset: ImageDataset,
    built: BuiltTarget,
    *,
    where: str,
    resolve: Any,
    evaluator: Evaluator,
    cache: ModelCache,
    auxiliary_images: np.ndarray | None,
    step: StepFn | None = None,
    panel: JudgePanel | None = None,
) -> DefenseEvaluation:
    """Evaluate the system's ``defenses:`` section against its attack suites."""

    d = system.defenses
    assert d is not None
    white, black = attack_suites(system, built, auxiliary_images is not None, dataset)
    training = [build_training_defense(t.name, t.params) for t in d.training]
    output = [build_output_defense(o.name, o.params, o.steps) for o in d.output]
    public = (
        public_data_for(d, system, dataset, where, resolve)
        if any(t.needs_auxiliary for t in training)
        else None
    )
    return evaluate_defenses(
        dataset,
        built.target,
        evaluator=evaluator,
        panel=panel,
        arch=target_arch(system, resolve),
        no_retraining=no_retraining_reason(system),
        training=training,
        output=output,
        white_box=white,
        black_box=black,
        auxiliary_images=None if auxiliary_images is None else auxiliary_images.astype(np.float32),
        public_data=public,
        cache=cache,
        seed=d.seed,
        max_accuracy_drop=d.max_accuracy_drop,
        query_budget=d.queries,
        step=step,
        priors=prior_provider(
            system, dataset, white, cache, resolve, auxiliary_images, seed=d.seed
        ),
    )


def evaluate_system_defenses(
    loaded: LoadedConfig,
    index: int,
    system: SystemConfig,
    dataset: ImageDataset,
    built: BuiltTarget,
    cache: ModelCache,
    store: HistoryStore,
    step: StepFn | None = None,
) -> DefenseEvaluation:
    """The system's defence evaluation: from the history file when stored, measured otherwise."""

    assert system.defenses is not None
    where = f"{loaded.path}: systems[{index}]"
    aux = (
        load_auxiliary(system.auxiliary, dataset, f"{where}.auxiliary", loaded.resolve)
        if system.auxiliary is not None
        else None
    )
    white, black = attack_suites(system, built, aux is not None, dataset)
    aux_sha = None if aux is None else hashlib.sha256(aux.tobytes()).hexdigest()
    key = evaluation_key(
        system_fingerprint=built.fingerprint,
        data_fingerprint=dataset.fingerprint(),
        defenses=system.defenses,
        attacks={**white, **black},
        arch=_arch_key(system, loaded.resolve),
        auxiliary=aux_sha,
        priors=prior_fingerprints(system, white, loaded.resolve, aux_sha),
    )
    stored = store.finished_defense_evaluation(key)
    if stored is not None:
        return DefenseEvaluation.from_dict(*stored)
    panel, evaluator, _ = reference_panel(dataset, cache=cache, public=aux)
    result = run_system_defenses(
        system,
        dataset,
        built,
        where=f"{where}.defenses",
        resolve=loaded.resolve,
        evaluator=evaluator,
        cache=cache,
        auxiliary_images=aux,
        step=step,
        panel=panel,
    )
    store.save_defense_evaluation(key, system.id, result.to_dict(), result.galleries())
    return result


__all__ = [
    "DEFAULT_OUTPUT",
    "DEFAULT_TRAINING",
    "attack_suites",
    "build_output_defense",
    "build_training_defense",
    "check_defenses",
    "evaluate_system_defenses",
    "evaluation_key",
    "no_retraining_reason",
    "prior_fingerprints",
    "prior_provider",
    "public_data_for",
    "run_system_defenses",
    "target_arch",
]
