"""Turn a system's configuration into its private data set and a target to attack."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invguard.assess.config import (
    BuiltinData,
    ConfigError,
    DataConfig,
    FolderData,
    LoadedConfig,
    NpzData,
    PytorchTarget,
    SystemConfig,
    TargetConfig,
)
from invguard.data import ImageDataset, load_builtin, load_image_folder, load_npz_dataset
from invguard.errors import InvGuardError
from invguard.models import ModelCache, build_model, load_state_dict_file, train_target
from invguard.models.architectures import describe_mismatch
from invguard.targets import Target, TorchTarget


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
    assert isinstance(target, PytorchTarget)
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
        assert target.model is not None
        assert target.arch is not None
        path = resolve(target.model)
        try:
            state = load_state_dict_file(path)
        except InvGuardError as exc:
            raise ConfigError(f"{where}.model: {exc}") from exc
        model = build_model(target.arch, dataset.image_shape, dataset.num_classes)
        problem = describe_mismatch(model, state)
        if problem:
            c, h, w = dataset.image_shape
            raise ConfigError(
                f"{where}.model: {path} does not fit arch '{target.arch}' for {c}x{h}x{w} inputs "
                f"and {dataset.num_classes} classes: {problem}"
            )
        model.load_state_dict(state)
        model.eval()
        from invguard.models.training import accuracy

        info = {
            "type": "pytorch",
            "name": path.name,
            "source": str(path),
            "arch": target.arch,
            "test_accuracy": accuracy(model, dataset.x_test, dataset.y_test)
            if len(dataset.y_test)
            else None,
            "access": "white-box (weights)",
        }
        fingerprint = file_sha256(path)
    built = TorchTarget(model, input_shape=dataset.image_shape, query_budget=query_budget)
    return BuiltTarget(built, info, fingerprint)


def system_where(index: int) -> str:
    return f"systems[{index}]"


def prepare_system(
    loaded: LoadedConfig, index: int, cache: ModelCache
) -> tuple[SystemConfig, ImageDataset, BuiltTarget]:
    """Load and check one system before any job runs (fail fast, with the field path)."""
    try:
        return _prepare_system(loaded, index, cache)
    except ConfigError as exc:
        raise ConfigError(f"{loaded.path}: {exc}") from exc


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
    return system, dataset, built
