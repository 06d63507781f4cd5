"""Train an image prior on the attacker's public images: a DCGAN (GMI) or a PLG-MI conditional GAN.

Generative-prior inversion needs a generator of images *like* the private ones, trained only on data
the attacker may hold. GMI (Zhang et al., "The Secret Revealer: Generative Model-Inversion Attacks
Against Deep Neural Networks", CVPR 2020) trains an unconditional GAN on public images and keeps its
discriminator for a realism term; PLG-MI (Yuan et al., "Pseudo Label-Guided Model Inversion Attack
via Conditional Generative Adversarial Network", AAAI 2023) pseudo-labels the public images with the
target, trains a class-conditional GAN with a projection discriminator (Miyato and Koyama, "cGANs
with Projection Discriminator", ICLR 2018) on them, and adds the target's max-margin loss on the
generated images to the generator's objective.

Both use the DCGAN architecture (Radford et al., ICLR 2016) with a spectrally normalised
discriminator (Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR
2018), the hinge loss (Lim and Ye, "Geometric GAN", 2017; Miyato et al. 2018) and, because public
sets are small, differentiable augmentation of real and fake images alike (Zhao et al.,
"Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020). The prior is a moving
average of the generator's weights (Yazici et al., "The Unusual Effectiveness of Averaging in GAN
Training", ICLR 2019) whose batch-norm statistics are recomputed at the end.

Training is deterministic for a seed: every random draw, weight initialisation included, comes from
one ``torch.Generator``; the global RNG is neither seeded nor advanced. Trained priors are kept in
the :class:`~invguard.models.cache.ModelCache` under a key of the data, the configuration and seed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from invguard.errors import InvalidParameterError, check_float, check_int
from invguard.models.cache import ModelCache, cache_key, locked
from invguard.priors.base import ImagePrior, ImageShape, OutputMap
from invguard.priors.dcgan import DCGANDiscriminator, DCGANGenerator

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
Classifier = Callable[[torch.Tensor], torch.Tensor]

PRIOR_FORMAT = 1  # bump when training changes so that cached priors are retrained
# Radford et al.'s (0.5, 0.999) gave slightly cleaner MNIST 5-9 digits than SNGAN's (0.0, 0.9)
# after 1,500 steps at lr 2e-4 and at 4e-4, with and without weight averaging.
ADAM_BETAS = (0.5, 0.999)
MIN_IMAGES = 8
BN_RECALIBRATION = (8, 256)  # batches x batch size of the post-training batch-norm statistics


@dataclass(frozen=True, kw_only=True)
class GanConfig:
    """Hyper-parameters of :func:`train_prior` and :func:`train_conditional_prior` (cache key).

    ``size`` is the generator's square resolution (32 or 64; None: 32 when the public images'
    larger side is at most 32, else 64). ``nz`` is the latent dimension, ``ngf``/``ndf`` the widths
    of generator and discriminator, ``steps`` the number of generator updates, each after
    ``n_critic`` discriminator updates, with Adam at ``lr_g``/``lr_d``. ``augment`` applies
    DiffAugment (Zhao et al. 2020: translation by up to 1/8 of the size, brightness and contrast,
    and a horizontal flip when ``hflip``) to real and fake images before the discriminator. Turn
    ``hflip`` on only for mirror-symmetric data (faces): the discriminator cannot tell a flipped
    image from an unflipped one, so on digits the generator learns to draw mirrored ones (measured
    on MNIST 5-9: mirrored 5s and 9s, fewer modes). ``target_weight`` weighs the target's
    max-margin loss (PLG-MI only). ``ema`` is the decay of the moving average of the generator's
    weights that is kept as the prior (Yazici et al., ICLR 2019; 0: keep the last weights).

    Defaults (measured on MNIST 5-9, 2,500 images, one thread of a shared 2-core machine: about
    2 minutes, recognisable digits). For about 100 faces (AT&T, 56x46) use
    ``GanConfig(size=32, batch_size=32, steps=3000, hflip=True)`` (about 3 minutes).
    """

    size: int | None = None
    nz: int = 64
    ngf: int = 16
    ndf: int = 16
    steps: int = 1500
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    n_critic: int = 1
    augment: bool = True
    hflip: bool = False
    target_weight: float = 0.2
    ema: float = 0.99

    def __post_init__(self) -> None:
        if self.size is not None and (isinstance(self.size, bool) or self.size not in (32, 64)):
            raise InvalidParameterError(
                f"The 'size' parameter must be None, 32 or 64, got {self.size!r}"
            )
        for name in ("nz", "ngf", "ndf", "steps", "n_critic"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("batch_size", self.batch_size, minimum=2)
        check_float("lr_g", self.lr_g, minimum=0.0, min_inclusive=False)
        check_float("lr_d", self.lr_d, minimum=0.0, min_inclusive=False)
        check_float("target_weight", self.target_weight, minimum=0.0)
        check_float("ema", self.ema, minimum=0.0, maximum=1.0, max_inclusive=False)
        for name in ("augment", "hflip"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise InvalidParameterError(
                    f"The '{name}' parameter must be a bool, got {type(value).__name__} {value!r}"
                )

    def resolved(self, image_hw: tuple[int, int]) -> GanConfig:
        """This configuration with ``size`` chosen for images of ``(height, width)``."""
        if self.size is not None:
            return self
        return dataclasses.replace(self, size=32 if max(image_hw) <= 32 else 64)


# --------------------------------------------------------------------------------------- losses


def diff_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    translation: bool = True,
    color: bool = True,
    hflip: bool = False,
) -> torch.Tensor:
    """DiffAugment (Zhao et al., NeurIPS 2020) of a batch in [-1, 1], differentiable in ``x``.

    Each image gets its own draw: an integer translation by up to 1/8 of its size (border pixels
    repeated), brightness ``+ U(-0.5, 0.5)`` and contrast ``x U(0.5, 1.5)`` about its mean (the
    paper's ranges), and, with ``hflip``, a mirror with probability 1/2.
    """
    n, _, h, w = x.shape
    if color:
        bright = torch.rand(n, 1, 1, 1, generator=generator) - 0.5
        contrast = torch.rand(n, 1, 1, 1, generator=generator) + 0.5
        x = x + bright
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
    if translation:
        ph, pw = max(1, h // 8), max(1, w // 8)
        ty = torch.randint(-ph, ph + 1, (n, 1), generator=generator)
        tx = torch.randint(-pw, pw + 1, (n, 1), generator=generator)
        padded = F.pad(x, (pw, pw, ph, ph), mode="replicate")
        rows = (torch.arange(h).unsqueeze(0) + ph + ty)[:, None, :, None]
        cols = (torch.arange(w).unsqueeze(0) + pw + tx)[:, None, None, :]
        batch = torch.arange(n)[:, None, None, None]
        chan = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if hflip:
        flip = torch.rand(n, 1, 1, 1, generator=generator) < 0.5
        x = torch.where(flip, x.flip(3), x)
    return x


def max_margin_loss(
    logits: torch.Tensor, y: torch.Tensor, *, reduction: Literal["mean", "none"] = "mean"
) -> torch.Tensor:
    """PLG-MI's max-margin loss (Yuan et al. 2023, Eq. 6): ``-(l_y - max_{j != y} l_j)``, averaged
    (or per sample with ``reduction="none"``, as the latent-search attacks use it).

    Unlike cross-entropy it stops pushing once class ``y`` leads, and it works on logits, so it
    does not saturate (Carlini and Wagner 2017's margin, used by PLG-MI for the inversion loss).
    """
    own = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    margin = others.max(dim=1).values - own
    return margin.mean() if reduction == "mean" else margin


def pseudo_label(probs: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """PLG-MI's top-n pseudo-labelling (Yuan et al. 2023, Sec. 3.1) of public images.

    ``probs`` is ``(m, k)``: the target's class probabilities for ``m`` public images. For each
    class ``c`` the ``per_class`` images with the highest ``probs[:, c]`` are kept with label ``c``
    (ties go to the lower index). An image may be kept for several classes, at most once for
    each. Returns ``(indices, labels)``, both ``(k * per_class,)`` int64, grouped by class, best
    first.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise InvalidParameterError(
            f"The 'probs' parameter must be a 2-D (images, classes) array, got shape {p.shape}"
        )
    if not np.issubdtype(p.dtype, np.number) or not np.isfinite(p).all():
        raise InvalidParameterError("The 'probs' parameter must hold finite numbers")
    n = check_int("per_class", per_class, minimum=1)
    if n > p.shape[0]:
        raise InvalidParameterError(
            f"The 'per_class' parameter must be an int <= {p.shape[0]} (the number of images), "
            f"got {n}"
        )
    order = np.argsort(-p.astype(np.float64), axis=0, kind="stable")[:n]  # (n, k)
    indices = order.T.reshape(-1).astype(np.int64)
    labels = np.repeat(np.arange(p.shape[1], dtype=np.int64), n)
    return indices, labels


# ----------------------------------------------------------------------------------- validation


def _check_images(
    images: object, shape: ImageShape, value_range: tuple[float, float]
) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4:
        raise InvalidParameterError(
            f"The 'images' parameter must be a 4-D (images, channels, height, width) array, "
            f"got {x.ndim}-D shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise InvalidParameterError(f"The 'images' parameter must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if len(x) < MIN_IMAGES:
        raise InvalidParameterError(
            f"The 'images' parameter must hold at least {MIN_IMAGES} images, got {len(x)}"
        )
    if x.shape[1] != shape[0]:
        raise InvalidParameterError(
            f"The 'images' parameter must have {shape[0]} channel(s) like 'shape' {shape!r}, "
            f"got {x.shape[1]}"
        )
    if not np.isfinite(x).all():
        raise InvalidParameterError("The 'images' parameter must hold finite values (no NaN/inf)")
    lo, hi = value_range
    slack = 1e-3 * (hi - lo)
    if float(x.min()) < lo - slack or float(x.max()) > hi + slack:
        raise InvalidParameterError(
            f"The 'images' parameter must lie in value_range {value_range!r}, "
            f"got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    return np.ascontiguousarray(x)


def _check_labels(labels: object, m: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (m,) or not np.issubdtype(y.dtype, np.integer):
        raise InvalidParameterError(
            f"The 'labels' parameter must be a 1-D int array with one label per image ({m}), "
            f"got {y.dtype} shape {y.shape}"
        )
    if m and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InvalidParameterError(
            f"The 'labels' parameter must hold ints in [0, {num_classes}), "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )
    return np.ascontiguousarray(y.astype(np.int64))


def _fingerprint(a: np.ndarray) -> str:
    h = hashlib.sha256(repr((a.dtype.str, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _prepare(x: np.ndarray, size: int, value_range: tuple[float, float]) -> torch.Tensor:
    """Public images, resized (bilinear, antialiased) to ``size x size`` and scaled to [-1, 1]."""
    lo, hi = value_range
    t = (torch.from_numpy(x) - lo) / (hi - lo)
    if tuple(t.shape[2:]) != (size, size):
        t = F.interpolate(
            t, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return (t.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()


# ------------------------------------------------------------------------------------- networks


@torch.no_grad()
def _init_weights(module: nn.Module, gen: torch.Generator) -> None:
    """DCGAN initialisation (Radford et al. 2016: N(0, 0.02), batch norm N(1, 0.02)) from ``gen``.

    Class embeddings of the generator are N(0, 1) like the latents they are concatenated to. The
    power-iteration vectors of spectral norm are redrawn from ``gen`` too, then iterated 15 times
    as PyTorch does on construction.
    """
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.normal_(1.0, 0.02, generator=gen)
            m.bias.zero_()
        elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
            norms: list[_SpectralNorm] = []
            weight = m.weight
            if parametrize.is_parametrized(m, "weight"):
                plist = getattr(m.parametrizations, "weight")  # noqa: B009
                assert isinstance(plist, parametrize.ParametrizationList)
                weight = plist.original
                norms = [p for p in plist if isinstance(p, _SpectralNorm)]
            std = 1.0 if isinstance(m, nn.Embedding) and not norms else 0.02
            weight.normal_(0.0, std, generator=gen)
            bias = getattr(m, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
            for sn in norms:
                _reset_power_iteration(sn, weight, gen)


def _reset_power_iteration(sn: _SpectralNorm, weight: torch.Tensor, gen: torch.Generator) -> None:
    if weight.ndim <= 1:
        return
    for buf in (sn._u, sn._v):
        assert isinstance(buf, torch.Tensor)
        buf.copy_(F.normalize(torch.randn(buf.shape, generator=gen), dim=0, eps=sn.eps))
    sn._power_method(sn._reshape_weight_to_matrix(weight), 15)


def _networks(
    config: GanConfig, channels: int, num_classes: int | None
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """Fresh networks; built under ``fork_rng`` so the caller's global RNG stream is untouched."""
    assert config.size is not None
    with torch.random.fork_rng(devices=[]):
        g = DCGANGenerator(
            nz=config.nz, ngf=config.ngf, channels=channels, size=config.size,
            num_classes=num_classes,
        )  # fmt: skip
        d = DCGANDiscriminator(
            ndf=config.ndf, channels=channels, size=config.size, num_classes=num_classes
        )
    return g, d


# ------------------------------------------------------------------------------------- training


@dataclass
class _Job:
    """One training run: prepared images in [-1, 1], optional labels and target, settings."""

    x: torch.Tensor
    y: torch.Tensor | None
    num_classes: int | None
    classifier: Classifier | None
    output_map: OutputMap
    config: GanConfig


class _Batches:
    """Index batches that go through a fresh random permutation of the images each epoch."""

    def __init__(self, n: int, batch: int, gen: torch.Generator) -> None:
        self.n, self.batch, self.gen = n, min(batch, n), gen
        self.perm = torch.randperm(n, generator=gen)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.n:
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx


def _augment(x: torch.Tensor, cfg: GanConfig, gen: torch.Generator) -> torch.Tensor:
    return diff_augment(x, gen, hflip=cfg.hflip) if cfg.augment else x


def _target_term(
    job: _Job, fake: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """PLG-MI's ``target_weight * max-margin`` of the target on geometrically augmented fakes."""
    assert job.classifier is not None
    cfg = job.config
    view = diff_augment(fake, gen, color=False, hflip=cfg.hflip) if cfg.augment else fake
    logits = job.classifier(job.output_map(view))
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(y), job.num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InvalidParameterError(
            f"The 'classifier' parameter must map a batch of {len(y)} images to "
            f"({len(y)}, {job.num_classes}) logits, got {got}"
        )
    return cfg.target_weight * max_margin_loss(logits, y)


def _train(
    job: _Job,
    g: DCGANGenerator,
    d: DCGANDiscriminator,
    gen: torch.Generator,
    progress: ProgressFn | None,
) -> tuple[DCGANGenerator, dict[str, float]]:
    """The hinge-loss GAN loop (Lim and Ye 2017; Miyato et al. 2018).

    Returns the generator to keep (the moving average of the generator's weights when
    ``config.ema`` > 0, Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training",
    ICLR 2019) and the final losses. The last discriminator update of each step sees the same fake
    batch that the generator is then updated on (as in the PyTorch DCGAN example), which saves one
    generator pass per step.
    """
    cfg = job.config
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=ADAM_BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=ADAM_BETAS)
    g_params: list[torch.Tensor] = list(g.parameters())
    g_avg = copy.deepcopy(g) if cfg.ema > 0 else g
    avg_params: list[torch.Tensor] = list(g_avg.parameters())
    batches = _Batches(len(job.x), cfg.batch_size, gen)
    k, n = job.num_classes, batches.batch
    g.train()
    d.train()
    loss_d = loss_g = torch.zeros(())
    for step in range(cfg.steps):
        for critic in range(cfg.n_critic):
            idx = batches.next()
            real, y_real = job.x[idx], (job.y[idx] if job.y is not None else None)
            y_fake = torch.randint(0, k, (n,), generator=gen) if k is not None else None
            with torch.set_grad_enabled(critic == cfg.n_critic - 1):
                fake = g(torch.randn(n, cfg.nz, generator=gen), y_fake)
            loss_d = (
                F.relu(1.0 - d(_augment(real, cfg, gen), y_real)).mean()
                + F.relu(1.0 + d(_augment(fake.detach(), cfg, gen), y_fake)).mean()
            )
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()  # type: ignore[no-untyped-call]
            opt_d.step()
        loss_g = -d(_augment(fake, cfg, gen), y_fake).mean()
        if job.classifier is not None and y_fake is not None and cfg.target_weight > 0:
            loss_g = loss_g + _target_term(job, fake, y_fake, gen)
        # only the generator's gradients: the discriminator's and the target's are left alone
        grads = torch.autograd.grad(loss_g, g_params)
        for p, grad in zip(g_params, grads, strict=True):
            p.grad = grad
        opt_g.step()
        if g_avg is not g:
            decay = min(cfg.ema, (1.0 + step) / (10.0 + step))  # short warm-up
            with torch.no_grad():
                torch._foreach_lerp_(avg_params, g_params, 1.0 - decay)
        if progress is not None:
            progress(step + 1, cfg.steps)
    _recalibrate_batch_norm(g_avg, cfg, k, gen)
    return g_avg, {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach())}


@torch.no_grad()
def _recalibrate_batch_norm(
    g: DCGANGenerator, cfg: GanConfig, num_classes: int | None, gen: torch.Generator
) -> None:
    """Batch-norm statistics of the final generator (exact averages over fresh batches).

    During training the running statistics trail the moving generator; sampling in eval mode with
    statistics of the final weights gives the same images as a large training-mode batch would.
    """
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    g.train()
    rounds, size = BN_RECALIBRATION
    for _ in range(rounds):
        y = torch.randint(0, num_classes, (size,), generator=gen) if num_classes else None
        g(torch.randn(size, cfg.nz, generator=gen), y)
    for bn in bns:
        bn.momentum = 0.1
    g.eval()


# ------------------------------------------------------------------------------------ front end


def _fit(
    job: _Job,
    *,
    channels: int,
    seed: int,
    key: str | None,
    cache: ModelCache | None,
    record: dict[str, Any],
    progress: ProgressFn | None,
) -> tuple[DCGANGenerator, DCGANDiscriminator, dict[str, Any]]:
    """Load the prior from ``cache`` under ``key``, or train it (and store it when ``key``)."""
    with locked(cache, key):  # parallel processes sharing the cache train it once
        return _load_or_fit(job, channels, seed, key, cache, record, progress)


def _load_or_fit(
    job: _Job,
    channels: int,
    seed: int,
    key: str | None,
    cache: ModelCache | None,
    record: dict[str, Any],
    progress: ProgressFn | None,
) -> tuple[DCGANGenerator, DCGANDiscriminator, dict[str, Any]]:
    """:func:`_fit` under the cache lock."""
    g, d = _networks(job.config, channels, job.num_classes)
    hit = cache.load(key) if cache is not None and key is not None else None
    if hit is not None:
        state, saved = hit
        try:
            g.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("g.")})
            d.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("d.")})
        except RuntimeError:
            assert key is not None
            log.warning("cached prior %s does not fit its configuration; retraining", key[:12])
        else:
            return g, d, {**saved, "cached": True, "cache_key": key}
    gen = torch.Generator().manual_seed(seed)
    _init_weights(g, gen)
    _init_weights(d, gen)
    log.info("training %s on %d public images (seed %d)", record["method"], len(job.x), seed)
    start = time.perf_counter()
    g, losses = _train(job, g, d, gen, progress)
    record = {**record, "seconds": round(time.perf_counter() - start, 2), **losses}
    if cache is not None and key is not None:
        state = {f"g.{k}": v for k, v in g.state_dict().items()}
        state.update({f"d.{k}": v for k, v in d.state_dict().items()})
        cache.save(key, state, record)
    return g, d, {**record, "cached": False, "cache_key": key}


def _common(
    images: np.ndarray,
    shape: ImageShape,
    value_range: tuple[float, float],
    config: GanConfig | None,
    seed: int,
) -> tuple[np.ndarray, OutputMap, GanConfig]:
    check_int("seed", seed, minimum=0)
    if config is not None and not isinstance(config, GanConfig):
        raise InvalidParameterError(
            f"The 'config' parameter must be a GanConfig or None, got {type(config).__name__}"
        )
    try:
        c, h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The 'shape' parameter must be (channels, height, width), got {shape!r}"
        ) from None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The 'value_range' parameter must be (low, high), got {value_range!r}"
        ) from None
    vr = (lo, hi)
    output_map = OutputMap(shape=(c, h, w), value_range=vr)
    x = _check_images(images, output_map.shape, vr)
    cfg = (config or GanConfig()).resolved((x.shape[2], x.shape[3]))
    return x, output_map, cfg


def train_prior(
    images: np.ndarray,
    *,
    shape: ImageShape,
    value_range: tuple[float, float] = (0.0, 1.0),
    config: GanConfig | None = None,
    seed: int = 0,
    cache: ModelCache | None = None,
    name: str = "trained-dcgan",
    progress: ProgressFn | None = None,
) -> ImagePrior:
    """Train (or load from ``cache``) an unconditional DCGAN prior on public ``images`` (GMI).

    ``images`` is ``(m, c, h, w)`` in ``value_range``: the attacker's public images, never the
    target's training data. They are resized to the generator's square ``size`` and scaled to
    [-1, 1]; the returned prior's :class:`OutputMap` resizes the generator's output back to the
    target's ``shape`` and ``value_range``, and it keeps the discriminator for GMI's realism term
    (Zhang et al., CVPR 2020). Deterministic for ``seed``; ``progress(step, steps)`` per step.
    """
    x, output_map, cfg = _common(images, shape, value_range, config, seed)
    fp = _fingerprint(x)
    key = cache_key(
        kind="prior-dcgan", prior_format=PRIOR_FORMAT, config=cfg, seed=seed, images=fp,
        value_range=list(output_map.value_range),
    )  # fmt: skip
    record = _record("DCGAN (GMI)", x, fp, cfg, seed)
    job = _Job(
        x=_prepare(x, _size(cfg), output_map.value_range),
        y=None, num_classes=None, classifier=None, output_map=output_map, config=cfg,
    )  # fmt: skip
    g, d, info = _fit(
        job, channels=x.shape[1], seed=seed, key=key, cache=cache, record=record, progress=progress
    )
    return ImagePrior(
        generator=g, latent_dim=cfg.nz, output_map=output_map, name=name, discriminator=d, info=info
    )


def train_conditional_prior(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    classifier: Classifier | None,
    shape: ImageShape,
    value_range: tuple[float, float] = (0.0, 1.0),
    config: GanConfig | None = None,
    seed: int = 0,
    cache: ModelCache | None = None,
    classifier_fingerprint: str | None = None,
    name: str = "plg-cgan",
    progress: ProgressFn | None = None,
) -> ImagePrior:
    """Train (or load) PLG-MI's class-conditional GAN (Yuan et al., AAAI 2023) on public images.

    ``labels`` are pseudo-labels in ``[0, num_classes)`` (the target's classes; see
    :func:`pseudo_label`). The discriminator is a projection discriminator (Miyato and Koyama
    2018). When ``classifier`` is given (a differentiable map from a batch in the target's input
    space, i.e. after the :class:`OutputMap`, to the target's logits; put it in eval mode), the
    generator's loss adds ``config.target_weight`` times the max-margin loss of the classifier on
    augmented generated images of their class. A classifier cannot be hashed: the prior is cached
    only when ``classifier_fingerprint`` (a string that identifies the classifier's weights) is
    given, or when there is no classifier.
    """
    x, output_map, cfg = _common(images, shape, value_range, config, seed)
    k = check_int("num_classes", num_classes, minimum=2)
    y = _check_labels(labels, len(x), k)
    if classifier is not None and not callable(classifier):
        raise InvalidParameterError(
            f"The 'classifier' parameter must be callable or None, got {type(classifier).__name__}"
        )
    if classifier_fingerprint is not None and not isinstance(classifier_fingerprint, str):
        raise InvalidParameterError(
            "The 'classifier_fingerprint' parameter must be a str or None, "
            f"got {type(classifier_fingerprint).__name__}"
        )
    fp = _fingerprint(x)
    key: str | None = None
    if classifier is None or classifier_fingerprint is not None:
        key = cache_key(
            kind="prior-plg-cgan", prior_format=PRIOR_FORMAT, config=cfg, seed=seed, images=fp,
            labels=_fingerprint(y), num_classes=k, value_range=list(output_map.value_range),
            shape=list(output_map.shape),
            classifier=classifier_fingerprint if classifier is not None else None,
        )  # fmt: skip
    record = _record("conditional DCGAN (PLG-MI)", x, fp, cfg, seed)
    record.update(num_classes=k, target_guided=classifier is not None)
    job = _Job(
        x=_prepare(x, _size(cfg), output_map.value_range), y=torch.from_numpy(y),
        num_classes=k, classifier=classifier, output_map=output_map, config=cfg,
    )  # fmt: skip
    g, d, info = _fit(
        job, channels=x.shape[1], seed=seed, key=key, cache=cache, record=record, progress=progress
    )
    return ImagePrior(
        generator=g, latent_dim=cfg.nz, output_map=output_map, name=name, num_classes=k,
        discriminator=d, info=info,
    )  # fmt: skip


def _size(cfg: GanConfig) -> int:
    assert cfg.size is not None
    return cfg.size


def _record(method: str, x: np.ndarray, fp: str, cfg: GanConfig, seed: int) -> dict[str, Any]:
    return {
        "source": f"trained by InvGuard on {len(x)} public images",
        "method": method,
        "images_fingerprint": fp,
        "image_shape": list(x.shape[1:]),
        "steps": cfg.steps,
        "seed": seed,
        "config": dataclasses.asdict(cfg),
    }


__all__ = [
    "GanConfig",
    "diff_augment",
    "max_margin_loss",
    "pseudo_label",
    "train_conditional_prior",
    "train_prior",
]
