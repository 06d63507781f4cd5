"""Reference recipes: train (or load from the cache) target and evaluation models on a data set."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from invguard.data.base import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.models.architectures import ARCHITECTURES, TARGET_ARCHITECTURES, build_model
from invguard.models.cache import ModelCache, cache_key, locked
from invguard.models.shipped import load_shipped
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
# FGSM adversarial training at 4/255 (Wong et al. 2020) makes the judge resist the adversarial
# features that inversion leaves in images (measured in README "Judges").
EVALUATION_RECIPE = TrainConfig(
    epochs=85,
    lr=2e-3,
    weight_decay=5e-4,
    augment=AugmentConfig(blend=0.4),
    adversarial_eps=4.0 / 255.0,
)
EVALUATION_STEPS = 24_000  # images seen in training; epochs shrink for larger data sets
SECOND_EVALUATION_ARCH = "evalmlp"
SECOND_EVALUATION_RECIPE = TrainConfig(
    epochs=60, lr=1e-3, weight_decay=1e-4, augment=AugmentConfig(hflip=False), adversarial_eps=0.1
)


def evaluation_recipe(num_images: int, base: TrainConfig = EVALUATION_RECIPE) -> TrainConfig:
    """An evaluation recipe with epochs scaled so that about 24,000 images are seen (10-85)."""
    epochs = max(10, min(base.epochs, EVALUATION_STEPS // max(1, num_images)))
    return dataclasses.replace(base, epochs=epochs)


def _model_key(role: str, dataset: ImageDataset, arch: str, config: TrainConfig, seed: int) -> str:
    return cache_key(
        role=role,
        dataset=dataset.fingerprint(),
        arch=arch,
        arch_version=ARCHITECTURES[arch].version,
        config=config,
        seed=seed,
    )


def evaluation_model_keys(dataset: ImageDataset, *, seed: int = 0) -> dict[str, str]:
    """The cache keys under which the evaluation model and the second evaluation model of
    ``dataset`` are stored (and shipped), by architecture; nothing is trained."""
    n = len(dataset.y_train)
    return {
        EVALUATION_ARCH: _model_key(
            "evaluation", dataset, EVALUATION_ARCH, evaluation_recipe(n), seed
        ),
        SECOND_EVALUATION_ARCH: _model_key(
            "evaluation",
            dataset,
            SECOND_EVALUATION_ARCH,
            evaluation_recipe(n, SECOND_EVALUATION_RECIPE),
            seed,
        ),
    }


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
    key = _model_key(role, dataset, arch, config, seed)
    with locked(cache, key):  # parallel processes sharing the cache train it once
        return _load_or_train(key, role, dataset, arch, config, seed, cache, progress)


def _load_or_train(
    key: str,
    role: str,
    dataset: ImageDataset,
    arch: str,
    config: TrainConfig,
    seed: int,
    cache: ModelCache | None,
    progress: ProgressFn | None,
) -> TrainedModel:
    """Model ``key`` from ``cache``, else the shipped weights, else trained (and stored in ``cache``)."""
    x, y = dataset.x_train, dataset.y_train
    hit = cache.load(key) if cache is not None else None
    if hit is None:
        hit = load_shipped(key)  # the judges of InvGuard's own data sets ship with the package
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
                source=str(record.get("source", "cache")),
            )
    log.info("training %s model '%s' on %s (seed %d)", role, arch, dataset.name, seed)
    trained = train_classifier(
        arch,
        x,
        y,
        dataset.num_classes,
        config=config,
        seed=seed,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
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
    """Train the independent evaluation model on the private training images.

    It has a different architecture from every target, is trained with light augmentation and FGSM
    adversarial training, is only ever used to judge reconstructions, never attacked, and never sees
    the held-out photos (its accuracy on them is its ``test_accuracy``).
    """
    assert ARCHITECTURES[EVALUATION_ARCH].role == "evaluation"
    return _get_or_train(
        role="evaluation",
        dataset=dataset,
        arch=EVALUATION_ARCH,
        config=config or evaluation_recipe(len(dataset.y_train)),
        seed=seed,
        cache=cache,
        progress=progress,
    )


def train_second_evaluation_model(
    dataset: ImageDataset,
    *,
    seed: int = 0,
    cache: ModelCache | None = None,
    progress: ProgressFn | None = None,
) -> TrainedModel:
    """A second judge of another family for non-face data: an MLP trained with FGSM at 0.1."""
    return _get_or_train(
        role="evaluation",
        dataset=dataset,
        arch=SECOND_EVALUATION_ARCH,
        config=evaluation_recipe(len(dataset.y_train), SECOND_EVALUATION_RECIPE),
        seed=seed,
        cache=cache,
        progress=progress,
    )
