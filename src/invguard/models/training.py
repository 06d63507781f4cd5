"""Deterministic training of reference classifiers (explicit ``torch.Generator``, no global seeding)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invguard.errors import check_choice, check_float, check_int
from invguard.models.architectures import FeatureClassifier, ImageShape, build_model

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Light, batched augmentation: small affine jitter, flips, brightness/contrast, pixel noise."""

    max_shift: float = 0.06
    max_rotate_deg: float = 8.0
    scale: float = 0.06
    hflip: bool = True
    brightness: float = 0.1
    contrast: float = 0.15
    noise: float = 0.02
    blend: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_classifier`; part of the model cache key."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    augment: AugmentConfig | None = None
    label_smoothing: float = 0.0
    adversarial_eps: float = 0.0  # > 0: FGSM adversarial training at this L-inf radius

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, min_inclusive=False)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_float("label_smoothing", self.label_smoothing, minimum=-1.0, maximum=1.0)
        check_float("adversarial_eps", self.adversarial_eps, minimum=0.0, maximum=1.0)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply random augmentation to a whole batch at once (one ``grid_sample`` call)."""
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = u(-cfg.max_rotate_deg, cfg.max_rotate_deg) * (math.pi / 180.0)
    scale = u(1.0 - cfg.scale, 1.0 + cfg.scale)
    flip = torch.ones(n)
    if cfg.hflip:
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = u(-2 * cfg.max_shift, 2 * cfg.max_shift)
    theta[:, 1, 2] = u(-2 * cfg.max_shift, 2 * cfg.max_shift)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = u(1.0 - cfg.contrast, 1.0 + cfg.contrast).view(n, 1, 1, 1)
    bright = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
    out = (out - mean) * contrast + mean + bright
    if cfg.blend > 0:
        partner = out[torch.randperm(n, generator=generator)]
        lam = u(0.0, cfg.blend).view(n, 1, 1, 1)
        out = (1 - lam) * out + lam * partner
    if cfg.noise > 0:
        out = out + cfg.noise * torch.randn(out.shape, generator=generator)
    return out.clamp(0.0, 1.0)


def fgsm_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
) -> torch.Tensor:
    """FGSM with a random start ("fast adversarial training", Wong, Rice, Kolter, ICLR 2020).

    One gradient step of size ``1.25 * eps`` from a uniform start in the ``eps`` ball, projected back
    to the ball and to [0, 1].
    """
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    delta.requires_grad_(True)
    loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
    (grad,) = torch.autograd.grad(loss, delta)
    step = (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)
    return (x + step).clamp(0.0, 1.0).detach()


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing ``alpha`` (negative values allowed, Struppek et al. 2024).

    The target distribution is ``(1 - alpha) * onehot + alpha / C``.
    """
    if smoothing == 0.0:
        return F.cross_entropy(logits, y)
    c = logits.shape[1]
    target = F.one_hot(y, c).to(logits.dtype) * (1.0 - smoothing) + smoothing / c
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@dataclass
class TrainedModel:
    """A trained reference model and what was measured while training it."""

    model: FeatureClassifier
    arch: str
    input_shape: ImageShape
    num_classes: int
    config: TrainConfig
    seed: int
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    cache_key: str = ""
    from_cache: bool = False
    source: str = "trained"  # "trained" now, "cache" (the model cache) or "shipped" (the package)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on numpy images ``x`` and labels ``y``."""
    if len(y) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model(torch.from_numpy(x[i : i + batch_size]))
        correct += int((logits.argmax(1).numpy() == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / len(y)


def train_classifier(
    arch: str,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    config: TrainConfig,
    seed: int,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> TrainedModel:
    """Train reference architecture ``arch`` on ``(x, y)`` deterministically from ``seed``."""
    check_int("seed", seed, minimum=0)
    shape: ImageShape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    gen = torch.Generator().manual_seed(seed)
    model = build_model(arch, shape, num_classes, generator=gen)
    params = list(model.parameters())
    opt: torch.optim.Optimizer
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.ascontiguousarray(y)).long()
    n = len(yt)
    steps_per_epoch = math.ceil(n / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, config.batch_size):
            idx = perm[i : i + config.batch_size]
            xb = xt[idx]
            if config.augment is not None:
                xb = augment_batch(xb, config.augment, gen)
            loss = smoothed_cross_entropy(model(xb), yt[idx], config.label_smoothing)
            if config.adversarial_eps > 0:
                x_adv = fgsm_examples(model, xb, yt[idx], config.adversarial_eps, gen)
                adv_loss = smoothed_cross_entropy(model(x_adv), yt[idx], config.label_smoothing)
                loss = 0.5 * (loss + adv_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
        if progress is not None:
            progress(epoch + 1, config.epochs)
    model.eval()
    seconds = time.perf_counter() - start
    test_acc = (
        accuracy(model, x_test, y_test) if x_test is not None and y_test is not None else None
    )
    return TrainedModel(
        model=model,
        arch=arch,
        input_shape=shape,
        num_classes=num_classes,
        config=config,
        seed=seed,
        train_accuracy=accuracy(model, x, y),
        test_accuracy=test_acc,
        seconds=seconds,
    )
