"""Adapt a pretrained image prior to the attacker's public images (few-shot GAN adaptation).

A generator pretrained on a large public set (the public face DCGAN: synthetic colour DigiFace
faces) draws faces, but not faces *like* the target's (grey 1990s AT&T photos). Few-shot GAN
adaptation fine-tunes it on a handful of images of the new domain: the generator starts from the
pretrained weights, a fresh discriminator is trained from scratch with differentiable augmentation
(Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020), the
first generator blocks are frozen so that the coarse structure (pose, layout, diversity) is kept
(Mo et al., "Freeze the Discriminator", 2020, freeze layers of the pretrained networks; the
pretrained generator here ships without a discriminator, so the generator is frozen instead), and
the learning rate is small and the run short.

The discriminator sees what the target sees: the generator's output through the prior's
:class:`~invguard.priors.base.OutputMap` (grey, cropped, the target's size), resized to a square,
against the public photos resized the same way. So the adaptation moves the *mapped* images to the
public photos' style and leaves what the map throws away (colour) free.

Adaptation is deterministic for a seed (every draw comes from one ``torch.Generator``; the global
RNG is neither seeded nor advanced) and cached in the :class:`~invguard.models.cache.ModelCache`
under a key of the pretrained weights, the public images, the output map, the configuration and
the seed, like :func:`~invguard.priors.train.train_prior`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invguard.errors import InvalidParameterError, check_float, check_int
from invguard.models.cache import ModelCache, cache_key, locked
from invguard.priors.base import ImagePrior
from invguard.priors.dcgan import DCGANDiscriminator, DCGANGenerator
from invguard.priors.train import (
    ADAM_BETAS,
    GanConfig,
    ProgressFn,
    _Batches,
    _check_images,
    _fingerprint,
    _init_weights,
    _prepare,
    _recalibrate_batch_norm,
    diff_augment,
)

log = logging.getLogger(__name__)

ADAPT_FORMAT = 1  # bump when adaptation changes so that cached priors are re-adapted


@dataclass(frozen=True, kw_only=True)
class AdaptConfig:
    """Hyper-parameters of :func:`adapt_prior` (part of the cache key).

    ``steps`` generator updates (each after one discriminator update) on batches of
    ``batch_size``, Adam at ``lr_g`` (small: the generator starts from pretrained weights) and
    ``lr_d`` (the discriminator is new). ``frozen_blocks`` is how many of the generator's first
    transposed-convolution blocks (with their batch norms) keep their pretrained weights; with
    ``batch_norm_only`` the other blocks train only their batch norms' scales and shifts (Noguchi
    and Harada, "Image Generation From Small Datasets via Batch Statistics Adaptation", ICCV
    2019), the convolutions stay pretrained.
    ``size`` (32 or 64) and ``ndf`` are the discriminator's square input resolution and width.
    ``augment`` applies DiffAugment to real and fake images (with a mirror flip when ``hflip``).
    ``ema`` is the decay of the moving average of the generator's weights kept as the prior.

    Defaults: the best of three settings measured with PPA against the faces30 CNN
    (``benchmarks/bench_generative.py``; open verdict 0.267 against 0.233 unadapted, i.e. one
    class of 30 more; lr_g 5e-5 with one frozen block and a 64x64 discriminator: 0.200, striped
    images; batch norms only at lr_g 5e-4: 0.233). Cost: 40 steps took 21 s on 2 lightly loaded
    cores (so about 3.5 minutes for 400), 400 steps 12-25 minutes on a shared, overloaded one.
    """

    steps: int = 400
    batch_size: int = 16
    lr_g: float = 2e-5
    lr_d: float = 2e-4
    frozen_blocks: int = 2
    batch_norm_only: bool = False
    size: int = 32
    ndf: int = 32
    augment: bool = True
    hflip: bool = True
    ema: float = 0.99

    def __post_init__(self) -> None:
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=2)
        check_int("frozen_blocks", self.frozen_blocks, minimum=0)
        check_int("ndf", self.ndf, minimum=1)
        if isinstance(self.size, bool) or self.size not in (32, 64):
            raise InvalidParameterError(f"The 'size' parameter must be 32 or 64, got {self.size!r}")
        check_float("lr_g", self.lr_g, minimum=0.0, min_inclusive=False)
        check_float("lr_d", self.lr_d, minimum=0.0, min_inclusive=False)
        check_float("ema", self.ema, minimum=0.0, maximum=1.0, max_inclusive=False)
        for name in ("augment", "hflip", "batch_norm_only"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise InvalidParameterError(
                    f"The '{name}' parameter must be a bool, got {type(value).__name__} {value!r}"
                )


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers (names, shapes, bytes): a cache key part."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


@dataclass
class _Adaptation:
    """One run: the generator being adapted, the new discriminator, the public images in [-1, 1]."""

    prior: ImagePrior
    g: DCGANGenerator
    d: DCGANDiscriminator
    real: torch.Tensor
    config: AdaptConfig

    def to_disc(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw generator output -> the discriminator's view: mapped, square, in [-1, 1]."""
        lo, hi = self.prior.output_map.value_range
        x = (self.prior.output_map(raw) - lo) / (hi - lo)
        s = self.config.size
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x * 2.0 - 1.0

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        return diff_augment(x, gen, hflip=cfg.hflip) if cfg.augment else x


def _blocks(g: DCGANGenerator) -> list[list[nn.Module]]:
    """The generator's blocks: each transposed convolution with the batch norm after it."""
    blocks: list[list[nn.Module]] = []
    for m in g.main:
        if isinstance(m, nn.ConvTranspose2d):
            blocks.append([m])
        elif isinstance(m, nn.BatchNorm2d):
            blocks[-1].append(m)
    return blocks


def _check_frozen(g: DCGANGenerator, frozen_blocks: int) -> list[list[nn.Module]]:
    blocks = _blocks(g)
    if frozen_blocks >= len(blocks):
        raise InvalidParameterError(
            f"The 'frozen_blocks' parameter must be an int < {len(blocks)} (the generator's "
            f"blocks), got {frozen_blocks}"
        )
    return blocks


def _trainable(g: DCGANGenerator, cfg: AdaptConfig) -> list[torch.Tensor]:
    """Unfreeze what ``cfg`` trains (see :class:`AdaptConfig`); return those parameters."""
    blocks = _check_frozen(g, cfg.frozen_blocks)
    params: list[torch.Tensor] = []
    for i, block in enumerate(blocks):
        for m in block:
            train = i >= cfg.frozen_blocks and (
                isinstance(m, nn.BatchNorm2d) or not cfg.batch_norm_only
            )
            for p in m.parameters():
                p.requires_grad_(train)
                if train:
                    params.append(p)
    return params


def _run(job: _Adaptation, gen: torch.Generator, progress: ProgressFn | None) -> dict[str, float]:
    """The hinge-loss loop of :func:`~invguard.priors.train.train_prior`, on mapped images;
    the moving average of the generator is copied into ``job.g`` at the end."""
    cfg, g, d = job.config, job.g, job.d
    params = _trainable(g, cfg)
    opt_g = torch.optim.Adam(params, lr=cfg.lr_g, betas=ADAM_BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=ADAM_BETAS)
    g_avg = copy.deepcopy(g)
    avg: list[torch.Tensor] = [p for p in g_avg.parameters() if p.requires_grad]
    batches = _Batches(len(job.real), cfg.batch_size, gen)
    n, nz = batches.batch, job.prior.latent_dim
    g.train()
    d.train()
    loss_d = loss_g = torch.zeros(())
    for step in range(cfg.steps):
        fake = job.to_disc(g(torch.randn(n, nz, generator=gen)))
        loss_d = (
            F.relu(1.0 - d(job.augment(job.real[batches.next()], gen))).mean()
            + F.relu(1.0 + d(job.augment(fake.detach(), gen))).mean()
        )
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()  # type: ignore[no-untyped-call]
        opt_d.step()
        loss_g = -d(job.augment(fake, gen)).mean()
        grads = torch.autograd.grad(loss_g, params)  # the discriminator's are left alone
        for p, grad in zip(params, grads, strict=True):
            p.grad = grad
        opt_g.step()
        decay = min(cfg.ema, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(avg, params, 1.0 - decay)
        if progress is not None:
            progress(step + 1, cfg.steps)
    g.load_state_dict(g_avg.state_dict())
    _recalibrate_batch_norm(g, GanConfig(nz=nz), None, gen)
    return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach())}


def _check_prior(prior: object) -> ImagePrior:
    if not isinstance(prior, ImagePrior):
        raise InvalidParameterError(
            f"The 'prior' parameter must be an ImagePrior, got {type(prior).__name__}"
        )
    if prior.conditional or not isinstance(prior.generator, DCGANGenerator):
        raise InvalidParameterError(
            f"The 'prior' parameter must be an unconditional DCGAN prior (load_public_face_prior, "
            f"train_prior), got '{prior.name}'"
        )
    return prior


def adapt_prior(
    prior: ImagePrior,
    public_images: np.ndarray,
    *,
    config: AdaptConfig | None = None,
    seed: int = 0,
    cache: ModelCache | None = None,
    progress: ProgressFn | None = None,
) -> ImagePrior:
    """``prior``'s generator adapted to ``public_images`` (or loaded from ``cache``); ``prior`` is
    left unchanged.

    ``public_images`` is ``(m, c, h, w)`` in the prior's output value range with the target's
    channels (any size: they are resized to the discriminator's square). The returned prior has
    ``prior``'s output map, the new discriminator (usable for GMI's realism term), and ``info``
    with the source, steps, seconds and cache key. Deterministic for ``seed``.
    """
    base = _check_prior(prior)
    cfg = config if config is not None else AdaptConfig()
    if not isinstance(cfg, AdaptConfig):
        raise InvalidParameterError(
            f"The 'config' parameter must be an AdaptConfig or None, got {type(cfg).__name__}"
        )
    check_int("seed", seed, minimum=0)
    om = base.output_map
    x = _check_images(public_images, om.shape, om.value_range)
    assert isinstance(base.generator, DCGANGenerator)
    _check_frozen(base.generator, cfg.frozen_blocks)
    fp = _fingerprint(x)
    key = cache_key(
        kind="prior-adapted", adapt_format=ADAPT_FORMAT, config=cfg, seed=seed, images=fp,
        generator=module_fingerprint(base.generator), output_map=om.describe(),
        value_range=list(om.value_range),
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        d = DCGANDiscriminator(ndf=cfg.ndf, channels=om.shape[0], size=cfg.size)
    g = copy.deepcopy(base.generator)
    assert isinstance(g, DCGANGenerator)
    record = {
        "source": f"{base.info.get('source', base.name)}; adapted by InvGuard to {len(x)} "
        "public images",
        "method": "few-shot GAN adaptation (pretrained generator, new discriminator, DiffAugment)",
        "adapted_from": base.name,
        "images_fingerprint": fp,
        "steps": cfg.steps,
        "seed": seed,
        "config": dataclasses.asdict(cfg),
    }
    with locked(cache, key):  # parallel processes sharing the cache adapt it once
        hit = cache.load(key) if cache is not None else None
        info: dict[str, Any] | None = None
        if hit is not None:
            state, saved = hit
            try:
                g.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("g.")})
                d.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("d.")})
                info = {**saved, "cached": True, "cache_key": key}
            except RuntimeError:
                log.warning("cached adapted prior %s does not fit; adapting again", key[:12])
        if info is None:
            info = _adapt(_Adaptation(base, g, d, _prepare(x, cfg.size, om.value_range), cfg),
                          seed, key, cache, record, progress)  # fmt: skip
    return ImagePrior(
        generator=g, latent_dim=base.latent_dim, output_map=om, name=f"{base.name}-adapted",
        discriminator=d, info=info,
    )  # fmt: skip


def _adapt(
    job: _Adaptation,
    seed: int,
    key: str,
    cache: ModelCache | None,
    record: dict[str, Any],
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """Run the adaptation (in place on ``job.g`` and ``job.d``) and store it in ``cache``."""
    gen = torch.Generator().manual_seed(seed)
    _init_weights(job.d, gen)
    log.info("adapting %s to %d public images (seed %d)", job.prior.name, len(job.real), seed)
    start = time.perf_counter()
    losses = _run(job, gen, progress)
    record = {**record, "seconds": round(time.perf_counter() - start, 2), **losses}
    for m in (job.g, job.d):
        m.eval()
    if cache is not None:
        state = {f"g.{k}": v for k, v in job.g.state_dict().items()}
        state.update({f"d.{k}": v for k, v in job.d.state_dict().items()})
        cache.save(key, state, record)
    return {**record, "cached": False, "cache_key": key}


__all__ = ["ADAPT_FORMAT", "AdaptConfig", "adapt_prior", "module_fingerprint"]
