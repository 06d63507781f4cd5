"""Choosing a generative attack and preparing its image prior for a target.

``auto`` picks the generative-prior attack (IF-GMI) for models with convolutions, where input-space
inversion stays at chance (README, "Defaults across a zoo"), and MI-FACE otherwise. The prior is the
public face generator for face data when it is installed, else a DCGAN trained on the attacker's
public images; PLG-MI trains a conditional GAN on public images pseudo-labelled by the target.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from invguard.errors import DataError, InvalidParameterError
from invguard.models.cache import ModelCache
from invguard.priors import PUBLIC_FACE_INSTALL, ImagePrior, load_generator_file
from invguard.priors.finetune import module_fingerprint
from invguard.priors.pretrained import load_public_face_prior, public_face_weights_path
from invguard.targets.base import DifferentiableTarget, Target

if TYPE_CHECKING:
    from invguard.priors.train import GanConfig

GENERATIVE_NAMES = ("ifgmi", "ppdg", "ppa", "gmi", "plg")
PRIOR_KINDS = ("auto", "public-faces", "trained")
PLG_PER_CLASS = 30
ProgressFn = Callable[[int, int], None]


def has_convolutions(model: nn.Module) -> bool:
    """True when ``model`` has a convolution layer anywhere (the 'deep model' case)."""
    return any(
        isinstance(m, nn.modules.conv._ConvNd) or getattr(m, "has_convolutions", False) is True
        for m in model.modules()
    )


def choose_attack(requested: str, model: nn.Module | None) -> str:
    """``requested`` unless it is ``auto``: IF-GMI (PPA's latent search, then the generator's
    intermediate features) for convolutional models, MI-FACE otherwise."""
    if requested != "auto":
        return requested
    return "ifgmi" if model is not None and has_convolutions(model) else "miface"


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over a model's parameters and buffers (names, shapes, bytes): a cache key part."""
    return module_fingerprint(model)


def trained_prior_config(faces: bool) -> GanConfig | None:
    """The GAN recipe for priors trained on public images: for about 100 public faces a 32x32
    DCGAN with flips (measured in :mod:`invguard.priors.train`), else the default."""
    from invguard.priors.train import GanConfig

    return GanConfig(size=32, batch_size=32, steps=3000, hflip=True) if faces else None


def prepare_prior(
    kind: str,
    *,
    attack: str,
    shape: tuple[int, int, int],
    faces: bool,
    public: np.ndarray | None,
    target: Target,
    cache: ModelCache | None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> ImagePrior:
    """The image prior for ``attack``; ``kind`` is one of :data:`PRIOR_KINDS` or a generator file."""
    from invguard.priors.train import pseudo_label, train_conditional_prior, train_prior

    config = trained_prior_config(faces)

    if attack == "plg":
        images = _need_public(public, attack)
        if not isinstance(target, DifferentiableTarget):
            raise InvalidParameterError("attack 'plg' needs a white-box PyTorch target")
        probs = np.asarray(target.predict(images), dtype=np.float32)
        per_class = min(PLG_PER_CLASS, len(images))
        idx, labels = pseudo_label(probs, per_class)
        model = getattr(target, "model", None)
        return train_conditional_prior(
            images[idx],
            labels,
            num_classes=target.num_classes,
            classifier=target.differentiable_logits,
            classifier_fingerprint=model_fingerprint(model)
            if isinstance(model, nn.Module)
            else None,
            shape=shape,
            config=config,
            seed=seed,
            cache=cache,
            progress=progress,
        )
    if kind not in PRIOR_KINDS:
        return load_generator_file(Path(kind), shape)
    if kind == "public-faces" or (kind == "auto" and faces):
        try:
            return load_public_face_prior(shape)
        except DataError as exc:
            if kind == "public-faces" or public is None:
                raise DataError(
                    f"attack '{attack}' needs an image prior: {PUBLIC_FACE_INSTALL}, "
                    "or pass public images (--aux) to train one"
                ) from exc
    images = _need_public(public, attack)
    return train_prior(
        images, shape=shape, config=config, seed=seed, cache=cache, progress=progress
    )


def prior_source(kind: str, *, attack: str, faces: bool, has_public: bool) -> str | None:
    """Which prior :func:`prepare_prior` would build for these inputs, without building it:
    ``"conditional"`` (PLG-MI's cGAN on pseudo-labelled public images), ``"file"``,
    ``"public-faces"`` or ``"trained"``; None when it could not build one (no public images, and
    for face data no public face generator installed either)."""
    if attack == "plg":
        return "conditional" if has_public else None
    if kind not in PRIOR_KINDS:
        return "file"
    if kind == "public-faces" or (kind == "auto" and faces):
        try:
            public_face_weights_path()
        except DataError:
            if kind == "public-faces" or not has_public:
                return None
        else:
            return "public-faces"
    return "trained" if has_public else None


def _need_public(public: np.ndarray | None, attack: str) -> np.ndarray:
    if public is None or len(public) == 0:
        raise InvalidParameterError(
            f"attack '{attack}' needs the attacker's public images to train its generator: "
            "pass --aux PUBLIC.npz (or InversionRequest(auxiliary=...))"
        )
    return np.asarray(public, dtype=np.float32)


__all__ = [
    "GENERATIVE_NAMES",
    "PRIOR_KINDS",
    "choose_attack",
    "has_convolutions",
    "model_fingerprint",
    "prepare_prior",
    "prior_source",
]
