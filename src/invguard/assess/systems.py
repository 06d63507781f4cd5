"""Turn a system's configuration into its private data set and a target to attack."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invguard.assess.availability import endpoint_failure
from invguard.assess.config import (
    AttackConfig,
    AuxiliaryConfig,
    BuiltinAuxiliary,
    BuiltinData,
    ConfigError,
    DataConfig,
    FolderAuxiliary,
    FolderData,
    HttpTarget,
    LoadedConfig,
    NpzAuxiliary,
    NpzData,
    OnnxTarget,
    PytorchTarget,
    SklearnTarget,
    SystemConfig,
    TargetConfig,
)
from invguard.data import ImageDataset, load_builtin, load_image_folder, load_npz_dataset
from invguard.errors import InvGuardError
from invguard.models import ModelCache, train_target
from invguard.models.sources import (
    HttpOptions,
    SourceContext,
    expand_headers,
    load_estimator,
    load_torch_file,
    model_file,
    onnx_target,
    sklearn_target,
    torch_target,
)
from invguard.models.sources import http_target as source_http_target
from invguard.targets import Capability, Target, TorchTarget

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from invguard.priors import ImagePrior


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_data(data: DataConfig, where: str, resolve: Any) -> ImageDataset:
    """Load a system's private data; errors name the config field ``where``."""
    try:
        if isinstance(data, BuiltinData):
            return load_builtin(data.builtin)
        if isinstance(data, FolderData):
            folder = resolve(data.folder)
            if not folder.is_dir():
                raise ConfigError(f"{where}.folder: folder not found: {folder}")
            return load_image_folder(folder, data.image_size)
        assert isinstance(data, NpzData)
        return load_npz_dataset(resolve(data.npz))
    except ConfigError:
        raise
    except InvGuardError as exc:
        field = (
            "builtin"
            if isinstance(data, BuiltinData)
            else ("folder" if isinstance(data, FolderData) else "npz")
        )
        raise ConfigError(f"{where}.{field}: {exc}") from exc


@dataclass
class BuiltTarget:
    target: Target
    info: dict[str, Any]
    fingerprint: str


def build_target(
    target: TargetConfig,
    dataset: ImageDataset,
    cache: ModelCache,
    where: str,
    resolve: Any,
    *,
    query_budget: int | None = None,
) -> BuiltTarget:
    """The attackable target of a system, plus JSON-ready facts about it and a content hash."""
    ctx = _context(dataset, where, resolve)
    if isinstance(target, SklearnTarget):
        return _sklearn_target(target, ctx, dataset, query_budget)
    if isinstance(target, OnnxTarget):
        return _onnx_target(target, ctx, dataset, query_budget)
    if isinstance(target, HttpTarget):
        return _http_target(target, dataset, where, query_budget)
    assert isinstance(target, PytorchTarget)
    model: nn.Module
    info: dict[str, Any]
    if target.reference is not None:
        ref = target.reference
        trained = train_target(dataset, ref.arch, seed=ref.seed, cache=cache)
        info = {
            "type": "pytorch",
            "name": f"reference {ref.arch}",
            "source": f"InvGuard reference model ({ref.arch}, seed {ref.seed})",
            "test_accuracy": trained.test_accuracy,
            "access": "white-box (weights)",
        }
        model = trained.model
        fingerprint = trained.cache_key
    else:
        model, info, fingerprint = _user_torch_model(target, ctx, dataset)
    built = torch_target(target, model, ctx, query_budget=query_budget)
    normalize = target.normalize.pair() if target.normalize is not None else None
    if normalize is not None:  # the same weights behind another normalisation are another target
        blob = json.dumps([fingerprint, normalize], sort_keys=True)
        fingerprint = hashlib.sha256(blob.encode()).hexdigest()
        if info.get("test_accuracy") is not None:
            info["test_accuracy"] = _accuracy(
                TorchTarget(model, input_shape=dataset.image_shape, normalize=normalize), dataset
            )
    info["io"] = built.describe(dataset.class_names)
    return BuiltTarget(built, info, fingerprint)


def _context(dataset: ImageDataset, where: str, resolve: Any) -> SourceContext:
    return SourceContext(where, resolve, tuple(dataset.image_shape), dataset.num_classes)


def _user_torch_model(
    target: PytorchTarget, ctx: SourceContext, dataset: ImageDataset
) -> tuple[nn.Module, dict[str, Any], str]:
    """The user's program, or weights with a factory or reference arch, through the shared loader."""
    from invguard.models.training import accuracy

    source = target.program if target.program is not None else target.model
    assert source is not None
    path = ctx.resolve(source)
    model, loaded = load_torch_file(target, ctx)
    info = {
        "type": "pytorch",
        "name": path.name,
        **loaded,
        "model_output": target.model_output,
        "test_accuracy": accuracy(model, dataset.x_test, dataset.y_test)
        if len(dataset.y_test)
        else None,
        "access": "white-box (weights)",
    }
    fingerprint = file_sha256(path)
    if target.factory is not None:  # the same weights under another factory are another model
        blob = json.dumps([fingerprint, target.factory, target.kwargs], sort_keys=True, default=str)
        fingerprint = hashlib.sha256(blob.encode()).hexdigest()
    return model, info, fingerprint


def system_where(index: int) -> str:
    return f"systems[{index}]"


def prepare_system(
    loaded: LoadedConfig, index: int, cache: ModelCache
) -> tuple[SystemConfig, ImageDataset, BuiltTarget]:
    """Load and check one system before any job runs (fail fast, with the field path)."""
    try:
        return _prepare_system(loaded, index, cache)
    except ConfigError as exc:  # the same kind (an unreachable endpoint stays one)
        raise type(exc)(f"{loaded.path}: {exc}") from exc


def _prepare_system(
    loaded: LoadedConfig, index: int, cache: ModelCache
) -> tuple[SystemConfig, ImageDataset, BuiltTarget]:
    system = loaded.config.systems[index]
    where = system_where(index)
    dataset = load_data(system.data, f"{where}.data", loaded.resolve)
    for j, atk in enumerate(system.attacks):
        if atk.classes is not None:
            bad = [c for c in atk.classes if c >= dataset.num_classes]
            if bad:
                raise ConfigError(
                    f"{where}.attacks[{j}].classes: class index {bad[0]} is out of range "
                    f"(the data set has {dataset.num_classes} classes)"
                )
    built = build_target(system.target, dataset, cache, f"{where}.target", loaded.resolve)
    if Capability.GRADIENTS in built.target.capabilities:  # else the job fails: needs gradients
        for j, atk in enumerate(system.attacks):
            check_prior(atk, system, dataset, f"{where}.attacks[{j}]", loaded.resolve)
    return system, dataset, built


# ------------------------------------------------------------------------------------------------
# image priors of the generative-prior attacks (ppa, gmi, plg)


def _needs_prior(name: str) -> bool:
    from invguard.assess.registry import ATTACK_REGISTRY

    info = ATTACK_REGISTRY.get(name)
    return info is not None and info.needs_prior


def check_prior(
    atk: AttackConfig, system: SystemConfig, dataset: ImageDataset, where: str, resolve: Any
) -> None:
    """Fail fast (``ConfigError`` naming the field) when a generative-prior attack cannot get its
    image prior: no public images to train one, the public face generator not installed, a
    generator file that is missing or does not fit, or GMI's discriminator term without a
    generator that has a discriminator."""
    from invguard.assess.registry import AUTO, build_attack
    from invguard.attacks.priors_setup import prior_source
    from invguard.judges import is_face_data
    from invguard.priors import PUBLIC_FACE_INSTALL, load_generator_file

    if not _needs_prior(atk.name):
        return
    kind = atk.prior or AUTO
    faces = is_face_data(dataset)
    has_public = system.auxiliary is not None
    field = f"{where}.prior" if atk.prior else where
    source = prior_source(kind, attack=atk.name, faces=faces, has_public=has_public)
    if source is None:
        if kind == "public-faces" or (kind == AUTO and faces):
            alternative = "" if kind == "public-faces" else ", or set the system's 'auxiliary'"
            raise ConfigError(
                f"{field}: attack '{atk.name}' needs an image prior, and the public face "
                f"generator is not installed ({PUBLIC_FACE_INSTALL}){alternative}"
            )
        raise ConfigError(
            f"{field}: attack '{atk.name}' needs an image prior: set the system's 'auxiliary' "
            "(public images to train a generator on)"
            + ("" if atk.prior else " or 'prior' (a generator file)")
        )
    if source == "file":
        path = resolve(Path(kind))
        if not path.is_file():
            raise ConfigError(f"{where}.prior: generator file not found: {kind}")
        try:
            load_generator_file(path, dataset.image_shape)
        except InvGuardError as exc:
            raise ConfigError(f"{where}.prior: {exc}") from exc
    attack = build_attack(atk.name, atk.params, atk.budget)
    if float(getattr(attack, "prior_weight", 0.0)) > 0 and source not in ("trained", "conditional"):
        what = "a generator file" if source == "file" else f"the '{source}' prior"
        raise ConfigError(
            f"{field}: attack '{atk.name}' weighs the discriminator's realism term "
            f"(prior_weight > 0), but {what} has no discriminator: set prior: "
            "trained (with the system's 'auxiliary') or params: {prior_weight: 0}"
        )


def prior_fingerprint(atk: AttackConfig, resolve: Any, auxiliary_sha: str | None) -> dict[str, Any]:
    """What a generative-prior attack's image prior depends on besides the target, the data and
    the seed (all three already in the job key): the prior setting, a generator file's contents
    and the auxiliary images."""
    from invguard.assess.registry import AUTO
    from invguard.attacks.priors_setup import PRIOR_KINDS

    kind = atk.prior or AUTO
    out: dict[str, Any] = {"kind": kind, "auxiliary": auxiliary_sha}
    if kind not in PRIOR_KINDS:
        path = resolve(Path(kind))
        out["file"] = file_sha256(path) if path.is_file() else None
    return out


def build_prior(
    atk: AttackConfig,
    dataset: ImageDataset,
    target: Target,
    cache: ModelCache,
    resolve: Any,
    auxiliary: np.ndarray | None,
    *,
    seed: int,
) -> ImagePrior | None:
    """The image prior of a generative-prior attack (None for the other attacks), prepared as
    ``invguard attack`` does (:func:`~invguard.attacks.priors_setup.prepare_prior`, cached).

    PLG-MI pseudo-labels the public images with ``target`` and trains against it; it does so
    through an unbudgeted view of the same model, so that preparing the (cached) prior never spends
    the attack's query budget and a cached prior gives the same job result as a fresh one."""
    from torch import nn

    from invguard.assess.registry import AUTO
    from invguard.attacks.priors_setup import PRIOR_KINDS, prepare_prior
    from invguard.judges import is_face_data

    if not _needs_prior(atk.name):
        return None
    kind = atk.prior or AUTO
    if kind not in PRIOR_KINDS:
        kind = str(resolve(Path(kind)))
    model = getattr(target, "model", None)
    view = (
        TorchTarget(model, input_shape=dataset.image_shape)
        if isinstance(model, nn.Module)
        else target
    )
    return prepare_prior(
        kind,
        attack=atk.name,
        shape=dataset.image_shape,
        faces=is_face_data(dataset),
        public=auxiliary,
        target=view,
        cache=cache,
        seed=seed,
    )


def _access(spec: Any) -> str:
    return f"black-box, {spec.describe()}"


def _sklearn_target(
    cfg: SklearnTarget, ctx: SourceContext, dataset: ImageDataset, budget: int | None
) -> BuiltTarget:
    path = model_file(ctx, cfg.model)
    est = load_estimator(cfg, ctx)
    # the owner's view (full outputs, not billed to any attack) measures test accuracy
    owner = sklearn_target(est, ctx)
    target = sklearn_target(est, ctx, output=cfg.output.spec(), query_budget=budget)
    spec = target.output
    info = {
        "type": "sklearn",
        "name": path.name,
        "source": str(path),
        "estimator": type(est).__name__,
        "test_accuracy": _accuracy(owner, dataset),
        "access": _access(spec),
    }
    return BuiltTarget(target, info, file_sha256(path) + ":" + spec.describe())


def _onnx_target(
    cfg: OnnxTarget, ctx: SourceContext, dataset: ImageDataset, budget: int | None
) -> BuiltTarget:
    path = model_file(ctx, cfg.model)
    spec = cfg.output.spec()
    target = onnx_target(cfg, ctx, output=spec, query_budget=budget)
    owner = onnx_target(cfg, ctx)
    info = {
        "type": "onnx",
        "name": path.name,
        "source": str(path),
        "test_accuracy": _accuracy(owner, dataset),
        "access": _access(spec),
    }
    return BuiltTarget(target, info, file_sha256(path) + ":" + spec.describe())


def http_target(cfg: HttpTarget, dataset: ImageDataset, where: str, budget: int | None) -> Any:
    """The endpoint of an HTTP system as a black-box target (through the shared loader)."""
    return source_http_target(
        cfg,
        SourceContext(where, Path, tuple(dataset.image_shape), dataset.num_classes),
        output=cfg.output.spec(),
        query_budget=budget,
        options=HttpOptions(concurrency=cfg.concurrency),
    )


CANARY_INPUTS = 4


def _http_target(
    cfg: HttpTarget, dataset: ImageDataset, where: str, budget: int | None
) -> BuiltTarget:
    """An endpoint's fingerprint is its answers to a few fixed canary inputs: if the model behind
    it changes, so do the job keys, and old results are not reused."""
    import numpy as np

    from invguard.targets.http import redact_url

    spec = cfg.output.spec()
    target = http_target(cfg, dataset, where, budget)
    canary = np.random.default_rng(20240601).random(
        (CANARY_INPUTS, *dataset.image_shape), dtype=np.float32
    )
    probe = http_target(cfg, dataset, where, None)
    try:
        answers = probe.predict(canary)
    except InvGuardError as exc:
        raise endpoint_failure(exc, f"{where}.url") from exc
    finally:
        probe.close()
    digest = hashlib.sha256(np.round(answers.astype(np.float64), 4).tobytes()).hexdigest()
    info = {
        "type": "http",
        "name": redact_url(cfg.url),
        "source": redact_url(cfg.url),
        "test_accuracy": None,
        "access": _access(spec),
        "canary_queries": CANARY_INPUTS,
    }
    return BuiltTarget(target, info, f"{redact_url(cfg.url)}:{spec.describe()}:{digest}")


def _accuracy(owner: Target, dataset: ImageDataset) -> float | None:
    """Test accuracy measured through an owner's adapter (never the attack's, whose queries count)."""
    if not len(dataset.y_test):
        return None
    pred = owner.predict(dataset.x_test).argmax(1)
    return float((pred == dataset.y_test).mean())


def probe_posture(cfg: HttpTarget, dataset: ImageDataset, where: str) -> list[dict[str, Any]]:
    """Run the endpoint posture probes (measured, bounded in requests) for an HTTP system."""
    import numpy as np

    from invguard.assess.posture import probe_endpoint

    try:
        observations = probe_endpoint(
            cfg.url,
            input_shape=dataset.image_shape,
            num_classes=dataset.num_classes,
            headers=expand_headers(cfg.headers, where),
            request_template=cfg.request_template,
            response_mapping=cfg.response,
            burst=cfg.probe_burst,
            rng=np.random.default_rng(0),
            timeout=cfg.timeout,
        )
    except ConfigError:
        raise
    except InvGuardError as exc:
        raise ConfigError(f"{where}.url: {exc}") from exc
    return [o.to_dict() for o in observations]


def load_auxiliary(
    aux: AuxiliaryConfig, dataset: ImageDataset, where: str, resolve: Any
) -> np.ndarray:
    """The attacker's public images, shaped like the private data's images."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from invguard.data import load_builtin_auxiliary
    from invguard.data.files import IMAGE_SUFFIXES

    c, h, w = dataset.image_shape
    try:
        if isinstance(aux, BuiltinAuxiliary):
            images = load_builtin_auxiliary(aux.builtin)
        elif isinstance(aux, FolderAuxiliary):
            folder = resolve(aux.folder)
            if not folder.is_dir():
                raise ConfigError(f"{where}.folder: folder not found: {folder}")
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ConfigError(f"{where}.folder: no images under {folder}")
            arrays = []
            for f in files:
                try:
                    with Image.open(f) as raw:
                        img = raw.convert("L").resize((w, h), Image.Resampling.BILINEAR)
                except (OSError, UnidentifiedImageError) as exc:
                    raise ConfigError(f"{where}.folder: cannot read image {f}: {exc}") from exc
                arrays.append(np.asarray(img, dtype=np.float32) / 255.0)
            images = np.stack(arrays)[:, None]
        else:
            assert isinstance(aux, NpzAuxiliary)
            path = resolve(aux.npz)
            if not path.is_file():
                raise ConfigError(f"{where}.npz: file not found: {path}")
            with np.load(path, allow_pickle=False) as npz:
                if "x" not in npz.files:
                    raise ConfigError(f"{where}.npz: {path} has no array 'x'")
                images = np.asarray(npz["x"], dtype=np.float32)
            if images.ndim == 3:
                images = images[:, None]
    except ConfigError:
        raise
    except (InvGuardError, OSError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if tuple(images.shape[1:]) != (c, h, w):
        raise ConfigError(
            f"{where}: auxiliary images have shape {tuple(images.shape[1:])}, the private data's "
            f"images {(c, h, w)}"
        )
    if float(images.min()) < 0.0 or float(images.max()) > 1.0:
        raise ConfigError(f"{where}: auxiliary image values must lie in [0, 1]")
    return images


def expand_attacks(
    system: SystemConfig, built: BuiltTarget, dataset: ImageDataset
) -> tuple[SystemConfig, list[dict[str, str]]]:
    """Replace ``auto`` entries with the attacks the target's access allows (one white-box attack:
    IF-GMI for a convolutional PyTorch model, MI-FACE otherwise); list the skipped."""
    from torch import nn

    from invguard.assess.config import Budget
    from invguard.assess.registry import ATTACK_REGISTRY, AUTO, select_attacks
    from invguard.judges import is_face_data

    if all(a.name != AUTO for a in system.attacks):
        return system, []
    attacks: list[AttackConfig] = []
    skipped: list[dict[str, str]] = []
    model = getattr(built.target, "model", None)
    for atk in system.attacks:
        if atk.name != AUTO:
            attacks.append(atk)
            continue
        chosen, skip = select_attacks(
            built.target.capabilities,
            system.auxiliary is not None,
            model=model if isinstance(model, nn.Module) else None,
            faces=is_face_data(dataset),
        )
        skipped += skip
        for name in chosen:
            if any(a.name == name for a in attacks):
                continue
            budget = atk.budget
            if budget.iterations is not None and ATTACK_REGISTRY[name].iterations_field is None:
                budget = Budget(queries=budget.queries, seconds=budget.seconds)
            attacks.append(
                AttackConfig(name=name, seeds=atk.seeds, budget=budget, classes=atk.classes)
            )
    return system.model_copy(update={"attacks": attacks}), skipped
