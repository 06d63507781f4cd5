"""Reference recipes: train (or load from the cache) target and evaluation models on a data set."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from invguard.data.base import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.models.architectures import ARCHITECTURES, TARGET_ARCHITECTURES, build_model
from invguard.models.cache import ModelCache, cache_key
from invguard.models.training import (
    AugmentConfig,
    ProgressFn,
    TrainConfig,
    TrainedModel,
    accuracy,
    train_classifier,
)

log = logging.getLogger(__name__)

TARGET_RECIPES: dict[str, TrainConfig] = {
    "softmax": TrainConfig(epochs=100, lr=1e-3),
    "mlp": TrainConfig(epochs=60, lr=1e-3),
    "cnn": TrainConfig(epochs=40, lr=1e-3),
}
EVALUATION_ARCH = "evalnet"
EVALUATION_RECIPE = TrainConfig(
    epochs=60, lr=2e-3, weight_decay=5e-4, augment=AugmentConfig(blend=0.4)
)
EVALUATION_STEPS = 24_000  # images seen in training; epochs shrink for larger data sets


def evaluation_recipe(num_images: int) -> TrainConfig:
    """The evaluation recipe with epochs scaled so that about 24,000 images are seen (10-60)."""
    epochs = max(10, min(EVALUATION_RECIPE.epochs, EVALUATION_STEPS // max(1, num_images)))
    return dataclasses.replace(EVALUATION_RECIPE, epochs=epochs)


def _get_or_train(
    *,
    role: str,
    dataset: ImageDataset,
    arch: str,
    config: TrainConfig,
    seed: int,
    cache: ModelCache | None,
    progress: ProgressFn | None,
) -> TrainedModel:
    key = cache_key(
        role=role,
        dataset=dataset.fingerprint(),
        arch=arch,
        arch_version=ARCHITECTURES[arch].version,
        config=config,
        seed=seed,
    )
    if role == "evaluation":
        x, y = dataset.all_images()
    else:
        x, y = dataset.x_train, dataset.y_train
    hit = cache.load(key) if cache is not None else None
    if hit is not None:
        state, record = hit
        model = build_model(arch, dataset.image_shape, dataset.num_classes)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            log.warning("cached %s model %s does not fit '%s'; retraining", role, key[:12], arch)
            hit = None
        else:
            model.eval()
            return TrainedModel(
                model=model,
                arch=arch,
                input_shape=dataset.image_shape,
                num_classes=dataset.num_classes,
                config=config,
                seed=seed,
                train_accuracy=float(record.get("train_accuracy", accuracy(model, x, y))),
                test_accuracy=record.get("test_accuracy"),
                seconds=float(record.get("seconds", 0.0)),
                cache_key=key,
                from_cache=True,
            )
    log.info("training %s model '%s' on %s (seed %d)", role, arch, dataset.name, seed)
    trained = train_classifier(
        arch,
        x,
        y,
        dataset.num_classes,
        config=config,
        seed=seed,
        x_test=dataset.x_test if role == "target" else None,
        y_test=dataset.y_test if role == "target" else None,
        progress=progress,
    )
    trained.cache_key = key
    if cache is not None:
        meta: dict[str, Any] = {
            "role": role,
            "arch": arch,
            "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint(),
            "input_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "seed": seed,
            "config": dataclasses.asdict(config),
            "train_accuracy": trained.train_accuracy,
            "test_accuracy": trained.test_accuracy,
            "seconds": trained.seconds,
        }
        cache.save(key, trained.model.state_dict(), meta)
    return trained


def train_target(
    dataset: ImageDataset,
    arch: str,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    cache: ModelCache | None = None,
    progress: ProgressFn | None = None,
) -> TrainedModel:
    """Train a target model on the private training split (images 1-7 of each face identity)."""
    if arch not in TARGET_ARCHITECTURES:
        raise InvalidParameterError(
            f"The 'arch' parameter must be one of {', '.join(TARGET_ARCHITECTURES)}, got {arch!r}"
        )
    return _get_or_train(
        role="target",
        dataset=dataset,
        arch=arch,
        config=config or TARGET_RECIPES[arch],
        seed=seed,
        cache=cache,
        progress=progress,
    )


def train_evaluation_model(
    dataset: ImageDataset,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    cache: ModelCache | None = None,
    progress: ProgressFn | None = None,
) -> TrainedModel:
    """Train the independent evaluation model on *all* images of the private identities.

    It has a different architecture from every target, is trained with light augmentation, and is
    only ever used to judge reconstructions, never attacked.
    """
    assert ARCHITECTURES[EVALUATION_ARCH].role == "evaluation"
    return _get_or_train(
        role="evaluation",
        dataset=dataset,
        arch=EVALUATION_ARCH,
        config=config or evaluation_recipe(len(dataset.y_train) + len(dataset.y_test)),
        seed=seed,
        cache=cache,
        progress=progress,
    )
