"""Generative-prior model inversion: search a public generator's latent space, not the pixels.

* :class:`GMI`: Zhang et al., "The Secret Revealer: Generative Model-Inversion Attacks Against Deep
  Neural Networks", CVPR 2020. Minimise ``lambda * L_id(f(G(z)), y) + L_prior`` over ``z``, where
  ``L_id`` is the target's cross-entropy and ``L_prior = -D(G(z))`` the discriminator's realism
  term; several random starts per class, the most confident one kept.
* :class:`PPA`: Struppek et al., "Plug & Play Attacks: Towards Robust and Flexible Model Inversion
  Attacks", ICML 2022. A shared pool of random latents scored once, the best per class as starts
  (initial selection); the Poincare loss (or a max-margin loss, Yuan et al. 2023) on randomly
  cropped and flipped copies, so the result survives transformations instead of being adversarial;
  final selection of the candidate most confident under fresh random transformations.
* :class:`IFGMI`: Qiu et al., "A Closer Look at GAN Priors: Exploiting Intermediate Features for
  Enhanced Model Inversion Attacks", ECCV 2024. PPA's latent search, then the outputs of the
  generator's hidden blocks, each searched within an L1 ball around where the previous stage left
  them, so the image can move a little beyond what the latent space reaches. InvGuard's default
  runs two candidates per class and returns their pixel mean (``final="mean"``): what the two
  searches share adds up, the detail that each found alone averages out (measured in the README).
* :class:`PPDG`: Peng et al., "Pseudo-Private Data Guided Model Inversion Attacks", NeurIPS 2024.
  IF-GMI in rounds: between rounds the generator is tuned so that the round's latents draw the
  round's reconstructions, so that the next round searches a generator denser near the private
  data.
* :class:`PLGMI`: Yuan et al., "Pseudo Label-Guided Model Inversion Attack via Conditional
  Generative Adversarial Network", AAAI 2023: the same latent search in a class-conditional
  generator trained on public images pseudo-labelled by the target (:mod:`invguard.priors.train`).

All requested classes (and all candidates of each) are optimised together in one batch; gradients
flow only into the latents (the target's and generator's parameters are never updated).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from invguard.attacks.base import (
    AttackBase,
    InversionRequest,
    ProgressFn,
    SearchContext,
    SearchOutcome,
)
from invguard.errors import InvalidParameterError, TargetError, check_choice, check_float, check_int
from invguard.priors.base import ImagePrior
from invguard.priors.train import max_margin_loss
from invguard.targets.base import Capability, DifferentiableTarget, QueryBudgetExceededError, Target

IdentityLoss = Literal["cross_entropy", "margin", "poincare"]
IDENTITY_LOSSES: tuple[IdentityLoss, ...] = ("cross_entropy", "margin", "poincare")
FinalStep = Literal["select", "mean", "aligned_mean"]
FINAL_STEPS: tuple[FinalStep, ...] = ("select", "mean", "aligned_mean")
_POOL_BATCH = 256
ALIGN_SHIFT = 3  # pixels each way that final="aligned_mean" may shift a candidate


def identity_loss(logits: torch.Tensor, y: torch.Tensor, kind: IdentityLoss) -> torch.Tensor:
    """Per-sample identity loss of ``logits`` for classes ``y`` (lower is more ``y``-like).

    ``margin``: ``max_{j != y} l_j - l_y`` (PLG-MI); ``poincare``: the Poincare distance between the
    L1-normalised logits and the (shrunk) one-hot vector of ``y`` (PPA, Struppek et al. 2022).
    """
    if kind == "cross_entropy":
        return F.cross_entropy(logits, y, reduction="none")
    if kind == "margin":
        return max_margin_loss(logits, y, reduction="none")
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    u = logits / logits.abs().sum(1, keepdim=True).clamp_min(1e-12)
    v = (onehot - 1e-5).clamp_min(0.0)
    num = 2.0 * (u - v).pow(2).sum(1)
    den = (1.0 - u.pow(2).sum(1)).clamp_min(1e-12) * (1.0 - v.pow(2).sum(1))
    return torch.acosh(1.0 + num / den)


def random_transform(
    x: torch.Tensor, generator: torch.Generator, *, min_scale: float, hflip: bool
) -> torch.Tensor:
    """A random resized crop (area scale in ``[min_scale**2, 1]``) and flip per image, batched."""
    n = x.shape[0]
    s = min_scale + (1.0 - min_scale) * torch.rand(n, generator=generator)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - s)
    ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - s)
    flip = torch.ones(n)
    if hflip:
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = s * flip
    theta[:, 1, 1] = s
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True, kw_only=True)
class _LatentSearch(AttackBase):
    """Settings shared by the latent-space attacks (see the module docstring for the papers)."""

    name: ClassVar[str] = "latent"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.GRADIENTS})
    conditional: ClassVar[bool | None] = None  # True: needs a conditional prior; None: either
    features_optional: ClassVar[bool] = False  # True: a prior without features skips that stage

    steps: int = 60
    step_size: float = 0.05
    candidates: int = 1
    pool_size: int = 1024
    loss: IdentityLoss = "margin"
    identity_weight: float = 1.0
    prior_weight: float = 0.0
    transforms: int = 1
    min_crop: float = 0.85
    hflip: bool = True
    select_transforms: int = 8
    final: FinalStep = "select"
    latent_bound: float | None = None
    feature_layers: tuple[int, ...] = ()
    feature_steps: int = 20
    feature_step_size: float = 0.01
    feature_radius: float = 0.05
    rounds: int = 1
    tune_steps: int = 50
    tune_step_size: float = 1e-4

    def __post_init__(self) -> None:
        check_int("steps", self.steps, minimum=1)
        check_float("step_size", self.step_size, minimum=0.0, min_inclusive=False)
        check_int("candidates", self.candidates, minimum=1)
        check_int("pool_size", self.pool_size, minimum=0)
        check_choice("loss", self.loss, IDENTITY_LOSSES)
        check_float("identity_weight", self.identity_weight, minimum=0.0, min_inclusive=False)
        check_float("prior_weight", self.prior_weight, minimum=0.0)
        check_int("transforms", self.transforms, minimum=0)
        check_float("min_crop", self.min_crop, minimum=0.3, maximum=1.0)
        if not isinstance(self.hflip, bool):
            raise InvalidParameterError(f"The 'hflip' parameter must be a bool, got {self.hflip!r}")
        check_int("select_transforms", self.select_transforms, minimum=0)
        check_choice("final", self.final, FINAL_STEPS)
        if self.latent_bound is not None:
            check_float("latent_bound", self.latent_bound, minimum=0.0, min_inclusive=False)
        _check_layers(self.feature_layers)
        check_int("feature_steps", self.feature_steps, minimum=1)
        check_float("feature_step_size", self.feature_step_size, minimum=0.0, min_inclusive=False)
        check_float("feature_radius", self.feature_radius, minimum=0.0, min_inclusive=False)
        check_int("rounds", self.rounds, minimum=1)
        check_int("tune_steps", self.tune_steps, minimum=1)
        check_float("tune_step_size", self.tune_step_size, minimum=0.0, min_inclusive=False)

    def _check(self, target: Target, request: InversionRequest) -> None:
        self._check_prior(request.prior, _differentiable(target, self.name))

    def _search(self, ctx: SearchContext) -> SearchOutcome:
        """Invert every requested class through ``request.prior``, all classes in one batch."""
        target = _differentiable(ctx.target, self.name)
        prior = self._check_prior(ctx.request.prior, target)
        n = len(ctx.classes)
        search = self._search_type()(
            self,
            target,
            prior,
            torch.from_numpy(ctx.classes),
            ctx.torch_generator,
            ctx.deadline,
            ctx.progress,
        )
        images, conf, reason = search.run()
        return SearchOutcome(
            reconstructions=images,
            target_confidence=conf,
            iterations=np.full(n, search.steps_done, dtype=np.int64),
            stop_reasons=(reason,) * n,
            extra={
                "prior": prior.describe(),
                "candidates_per_class": self.candidates,
                "final": self.final,
                "feature_layers": list(search.feature_layers),
                "rounds": search.rounds_done,
                "tune_mse": search.tune_mse,
            },
        )

    def _search_type(self) -> type[_Search]:
        """The search state class (an ablation may swap in a subclass with another loss)."""
        return _Search

    def _check_prior(self, prior: ImagePrior | None, target: Target) -> ImagePrior:
        if prior is None:
            raise InvalidParameterError(
                f"attack '{self.name}' needs an image prior: pass InversionRequest(prior=...) "
                "(invguard.priors: load_public_face_prior, train_prior, train_conditional_prior)"
            )
        if tuple(prior.shape) != tuple(target.input_shape):
            raise InvalidParameterError(
                f"the prior '{prior.name}' draws images of shape {tuple(prior.shape)}, "
                f"but the target takes {tuple(target.input_shape)}"
            )
        if self.conditional is True and not prior.conditional:
            raise InvalidParameterError(
                f"attack '{self.name}' needs a class-conditional prior (train_conditional_prior), "
                f"got '{prior.name}'"
            )
        if prior.conditional and prior.num_classes != target.num_classes:
            raise InvalidParameterError(
                f"the conditional prior '{prior.name}' has {prior.num_classes} classes, "
                f"the target {target.num_classes}"
            )
        blocks = prior.feature_blocks
        if (
            self.feature_layers
            and self.feature_layers[-1] > blocks
            and not (self.features_optional and blocks == 0)
        ):
            raise InvalidParameterError(
                f"The 'feature_layers' parameter must name generator blocks 1 to "
                f"{prior.feature_blocks} of the prior '{prior.name}', got {self.feature_layers!r}"
                + ("" if prior.feature_blocks else " (its generator is not a DCGAN: use ())")
            )
        if self.rounds > 1 and not any(True for _ in prior.generator.parameters()):
            raise InvalidParameterError(
                f"attack '{self.name}' with rounds > 1 tunes the generator's weights, but the "
                f"prior '{prior.name}' exposes none (set rounds=1)"
            )
        if self.prior_weight > 0 and prior.discriminator is None:
            raise InvalidParameterError(
                f"attack '{self.name}' with prior_weight > 0 needs a prior with a discriminator; "
                f"'{prior.name}' has none (set prior_weight=0)"
            )
        return prior


def align_candidates(x: torch.Tensor, max_shift: int = ALIGN_SHIFT) -> torch.Tensor:
    """Candidates ``x`` of shape ``(classes, k, C, H, W)`` with each class's candidates after the
    first shifted (up to ``max_shift`` pixels each way, edges replicated) and possibly mirrored so
    that each correlates best (Pearson, over all pixels) with the first.

    The searches run under random crops and flips, so two candidates of one identity can find the
    same face a few pixels apart or mirrored; averaging them unaligned blurs it.
    """
    n, k, c, h, w = x.shape
    if k == 1:
        return x
    s = max_shift
    rest = x[:, 1:].reshape(n * (k - 1), c, h, w)
    views = []
    for v in (rest, rest.flip(-1)):
        padded = F.pad(v, (s, s, s, s), mode="replicate")
        views += [padded[..., dy : dy + h, dx : dx + w] for dy in range(2 * s + 1) for dx in range(2 * s + 1)]  # fmt: skip
    stack = torch.stack(views, 1).view(n, k - 1, len(views), c * h * w)
    stack_c = stack - stack.mean(-1, keepdim=True)
    ref = x[:, :1].reshape(n, 1, 1, c * h * w)
    ref_c = ref - ref.mean(-1, keepdim=True)
    corr = (stack_c * ref_c).sum(-1) / (stack_c.norm(dim=-1) * ref_c.norm(dim=-1)).clamp_min(1e-12)
    best = corr.argmax(2)  # (classes, k - 1)
    chosen = stack.gather(2, best[..., None, None].expand(n, k - 1, 1, c * h * w)).squeeze(2)
    return torch.cat([x[:, :1], chosen.view(n, k - 1, c, h, w)], 1)


def _check_layers(layers: object) -> None:
    ok = isinstance(layers, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in layers
    )
    if not ok or list(layers) != sorted(set(layers)):  # type: ignore[call-overload]
        raise InvalidParameterError(
            "The 'feature_layers' parameter must be a tuple of increasing ints >= 1 (generator "
            f"blocks), got {layers!r}"
        )


def project_l1_ball(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` onto the L1 ball of its ``radius``.

    Duchi et al., "Efficient Projections onto the l1-Ball for Learning in High Dimensions",
    ICML 2008 (the sort-based algorithm), batched over rows.
    """
    flat = v.reshape(len(v), -1)
    mag = flat.abs()
    u = mag.sort(dim=1, descending=True).values
    css = u.cumsum(1)
    k = torch.arange(1, flat.shape[1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - (css - radius[:, None]) / k > 0).sum(1).clamp_min(1)
    theta = ((css.gather(1, (rho - 1)[:, None]).squeeze(1) - radius) / rho).clamp_min(0.0)
    shrunk = flat.sign() * (mag - theta[:, None]).clamp_min(0.0)
    inside = (mag.sum(1) <= radius)[:, None]
    return torch.where(inside, flat, shrunk).view_as(v)


def _differentiable(target: Target, attack: str) -> DifferentiableTarget:
    """``target`` as a :class:`DifferentiableTarget`, or a one-line :class:`TargetError`."""
    if not isinstance(target, DifferentiableTarget):
        raise TargetError(
            f"attack '{attack}' needs a white-box PyTorch target (differentiable_logits)"
        )
    return target


class _Search:
    """One run's state: candidates, optimiser, budgets. Each step is one batched forward/backward."""

    def __init__(
        self,
        cfg: _LatentSearch,
        target: DifferentiableTarget,
        prior: ImagePrior,
        classes: torch.Tensor,
        gen: torch.Generator,
        deadline: float | None,
        progress: ProgressFn | None,
    ) -> None:
        self.cfg, self.target, self.prior, self.gen = cfg, target, prior, gen
        self.classes, self.deadline, self.progress = classes, deadline, progress
        self.y = classes.repeat_interleave(cfg.candidates)
        self.steps_done = 0
        self.rounds_done = 0
        self.tune_mse: list[tuple[float, float]] = []  # (first, last) loss of each tuning
        self.feature_layers = cfg.feature_layers if prior.feature_blocks else ()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.target.differentiable_logits(x)
        return out

    def run(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        """All rounds: search, and before each further round tune the generator (PPDG-MI)."""
        z, raw, reason = self.search_round()
        self.rounds_done = 1
        while self.rounds_done < self.cfg.rounds and reason == "max_iterations":
            tuned, reason = self.tune_prior(z, raw)
            if reason != "max_iterations":
                break
            self.prior = tuned
            z, raw, reason = self.search_round()
            self.rounds_done += 1
        return self.select(self.prior.output_map(raw), reason)

    def search_round(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        """One attack: initial selection, the latent search, then the feature stage (IF-GMI).
        Returns the final latents, the raw generator output and a stop reason."""
        reason = "max_iterations"
        try:
            z = self.initial_latents()
        except QueryBudgetExceededError:
            z = self.prior.sample_latents(len(self.y), self.gen)
            reason = "query_budget"
        if reason == "max_iterations":
            z, reason = self.optimise(z)
        if reason == "max_iterations" and self.feature_layers:
            raw, reason = self.optimise_features(z)
        else:
            with torch.no_grad():
                raw = self.prior.decode(z, self._cond(self.y))
        return z, raw, reason

    def tune_prior(self, z: torch.Tensor, raw: torch.Tensor) -> tuple[ImagePrior, str]:
        """PPDG-MI's generator tuning: a copy of the generator trained so that the round's final
        latents ``z`` (the pivots) draw the round's reconstructions ``raw`` (the pseudo-private
        data), compared in the target's input space; the target is not queried.

        Peng et al., "Pseudo-Private Data Guided Model Inversion Attacks", NeurIPS 2024 (the
        point-wise variant, pivotal tuning as in Roich et al. 2022). Where the paper tunes one
        generator per class and finds pivots by projection, InvGuard tunes one shared generator
        for all classes at once, pivoted at the latents the search ended at: the reconstructions
        of IF-GMI's feature stage lie beyond what those latents drew, so the tuning moves the
        generator (and the latents around each pivot) towards them.
        """
        cfg = self.cfg
        tuned = dataclasses.replace(self.prior, generator=copy.deepcopy(self.prior.generator))
        params = list(tuned.generator.parameters())
        goal = self.prior.output_map(raw).detach()
        cond = self._cond(self.y)
        opt = torch.optim.Adam(params, lr=cfg.tune_step_size)
        reason = "max_iterations"
        losses: list[float] = []
        for p in params:
            p.requires_grad_(True)
        for _ in range(cfg.tune_steps):
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                reason = "time_budget"
                break
            loss = F.mse_loss(tuned(z, cond), goal)
            losses.append(loss.item())
            grads = torch.autograd.grad(loss, params)
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
        for p in params:
            p.requires_grad_(False)
        if losses:
            self.tune_mse.append((losses[0], losses[-1]))
        return tuned, reason

    def _cond(self, y: torch.Tensor) -> torch.Tensor | None:
        return y if self.prior.conditional else None

    def initial_latents(self) -> torch.Tensor:
        """PPA's initial selection: the ``candidates`` best of a random pool for each class."""
        cfg, k, n_cls = self.cfg, self.cfg.candidates, len(self.classes)
        if cfg.pool_size <= k:
            return self.prior.sample_latents(len(self.y), self.gen)
        if self.prior.conditional:  # a pool per class: latents scored with their own class
            per = max(k, cfg.pool_size // n_cls)
            pool = self.prior.sample_latents(per * n_cls, self.gen)
            ys = self.classes.repeat_interleave(per)
            score = self._pool_scores(pool, ys).gather(1, ys.view(-1, 1)).view(n_cls, per)
            best = score.topk(k, dim=1).indices + torch.arange(n_cls).view(-1, 1) * per
            return pool[best.reshape(-1)].clone()
        pool = self.prior.sample_latents(cfg.pool_size, self.gen)
        score = self._pool_scores(pool, None)[:, self.classes]  # (pool, n_cls)
        best = score.topk(k, dim=0).indices.T.reshape(-1)  # class-major, k per class
        return pool[best].clone()

    def _pool_scores(self, pool: torch.Tensor, ys: torch.Tensor | None) -> torch.Tensor:
        outs = []
        with torch.no_grad():
            for i in range(0, len(pool), _POOL_BATCH):
                yb = None if ys is None else ys[i : i + _POOL_BATCH]
                x = self.prior(pool[i : i + _POOL_BATCH], yb)
                outs.append(self.logits(x).log_softmax(1))
        return torch.cat(outs)

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        return self.loss_raw(self.prior.decode(z, self._cond(self.y)))

    def loss_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """The summed attack loss of raw generator output (one row per candidate)."""
        cfg = self.cfg
        x = self.prior.output_map(raw)
        views = [x] + [
            random_transform(x, self.gen, min_scale=cfg.min_crop, hflip=cfg.hflip)
            for _ in range(cfg.transforms)
        ]
        logits = self.logits(torch.cat(views))
        ident = identity_loss(logits, self.y.repeat(len(views)), cfg.loss)
        total = cfg.identity_weight * ident.view(len(views), -1).mean(0)
        if cfg.prior_weight > 0:
            realism = self.prior.realism(raw, self._cond(self.y))
            assert realism is not None  # checked in _check_prior
            total = total - cfg.prior_weight * realism
        return total.sum()

    def optimise(self, z0: torch.Tensor) -> tuple[torch.Tensor, str]:
        cfg = self.cfg
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=cfg.step_size)
        for step in range(cfg.steps):
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                return z.detach(), "time_budget"
            try:
                (grad,) = torch.autograd.grad(self.loss(z), [z])
            except QueryBudgetExceededError:
                return z.detach(), "query_budget"
            opt.zero_grad(set_to_none=True)
            z.grad = grad
            opt.step()
            with torch.no_grad():
                self._project(z)
            self.steps_done += 1
            if self.progress is not None and (step % 10 == 0 or step + 1 == cfg.steps):
                self.progress(step + 1, cfg.steps)
        return z.detach(), "max_iterations"

    def optimise_features(self, z: torch.Tensor) -> tuple[torch.Tensor, str]:
        """IF-GMI's second stage: search each listed block's output features in turn, within an
        L1 ball (radius relative to the features' L1 norm) around where the latent search left them.

        Qiu et al., "A Closer Look at GAN Priors: Exploiting Intermediate Features for Enhanced
        Model Inversion Attacks", ECCV 2024. Returns the raw generator output and a stop reason.
        """
        layers = self.feature_layers
        with torch.no_grad():
            h = self.prior.features(z, self._cond(self.y), layers[0])
        done, reason = layers[0], "max_iterations"
        for layer in layers:
            with torch.no_grad():
                h = self.prior.carry(h, done, layer)
            done = layer
            h, reason = self._feature_search(h, layer)
            if reason != "max_iterations":
                break
        with torch.no_grad():
            return self.prior.decode_features(h, done), reason

    def _feature_search(self, h0: torch.Tensor, layer: int) -> tuple[torch.Tensor, str]:
        cfg = self.cfg
        radius = cfg.feature_radius * h0.reshape(len(h0), -1).abs().sum(1)
        delta = torch.zeros_like(h0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=cfg.feature_step_size)
        for _ in range(cfg.feature_steps):
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                return (h0 + delta).detach(), "time_budget"
            try:
                raw = self.prior.decode_features(h0 + delta, layer)
                (grad,) = torch.autograd.grad(self.loss_raw(raw), [delta])
            except QueryBudgetExceededError:
                return (h0 + delta).detach(), "query_budget"
            opt.zero_grad(set_to_none=True)
            delta.grad = grad
            opt.step()
            with torch.no_grad():
                delta.copy_(project_l1_ball(delta, radius))
            self.steps_done += 1
        return (h0 + delta).detach(), "max_iterations"

    def _project(self, z: torch.Tensor) -> None:
        """Keep latents where the generator was trained: a box, or inside the typical-set sphere."""
        if self.cfg.latent_bound is not None:
            z.clamp_(-self.cfg.latent_bound, self.cfg.latent_bound)
            return
        radius = math.sqrt(z.shape[1])
        z.mul_((radius / z.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0))

    def select(self, x: torch.Tensor, reason: str) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The final step: per class, the candidate most confident under random transformations
        (``final="select"``, PPA's final selection), or the pixel mean of the class's candidates
        (``final="mean"``)."""
        if self.cfg.final in ("mean", "aligned_mean"):
            return self.average(x, reason)
        cfg, k, n_cls = self.cfg, self.cfg.candidates, len(self.classes)
        with torch.no_grad():
            conf = torch.zeros(n_cls * k)
            try:
                conf = self._confidence(x, self.y)
                if k > 1 and cfg.select_transforms > 0:
                    conf = torch.stack(
                        [
                            self._confidence(
                                random_transform(
                                    x, self.gen, min_scale=cfg.min_crop, hflip=cfg.hflip
                                ),
                                self.y,
                            )
                            for _ in range(cfg.select_transforms)
                        ]
                    ).mean(0)
            except QueryBudgetExceededError:
                reason = "query_budget"
            best = conf.view(n_cls, k).argmax(1) + torch.arange(n_cls) * k
            final = x[best]
            try:
                final_conf = self._confidence(final, self.classes)
            except QueryBudgetExceededError:
                final_conf, reason = conf[best], "query_budget"
        return final.float().cpu(), final_conf.float().cpu(), reason

    def average(self, x: torch.Tensor, reason: str) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Each class's candidates averaged pixel by pixel: what the independent searches share
        (the identity's cues) adds up, what each found alone (its own face, its own adversarial
        detail) averages out."""
        n_cls = len(self.classes)
        with torch.no_grad():
            grouped = x.view(n_cls, self.cfg.candidates, *x.shape[1:])
            if self.cfg.final == "aligned_mean":
                grouped = align_candidates(grouped)
            final = grouped.mean(1)
            try:
                conf = self._confidence(final, self.classes)
            except QueryBudgetExceededError:
                conf, reason = torch.zeros(n_cls), "query_budget"
        return final.float().cpu(), conf.float().cpu(), reason

    def _confidence(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = self.logits(x).softmax(1)
        return probs.gather(1, y.view(-1, 1)).squeeze(1).cpu()


@dataclass(frozen=True, kw_only=True)
class GMI(_LatentSearch):
    """GMI (Zhang et al. 2020): cross-entropy identity loss (weight 100) plus the discriminator's
    realism prior, ``candidates`` random starts per class, no transformations."""

    name: ClassVar[str] = "gmi"
    steps: int = 100
    step_size: float = 0.02
    candidates: int = 2
    pool_size: int = 0
    loss: IdentityLoss = "cross_entropy"
    identity_weight: float = 100.0
    prior_weight: float = 1.0
    transforms: int = 0
    latent_bound: float | None = 1.0


@dataclass(frozen=True, kw_only=True)
class PPA(_LatentSearch):
    """Plug & Play-style attack (Struppek et al. 2022): initial selection from a shared pool,
    max-margin or Poincare loss under random crops and flips, final selection under transforms."""

    name: ClassVar[str] = "ppa"


@dataclass(frozen=True, kw_only=True)
class IFGMI(_LatentSearch):
    """IF-GMI (Qiu et al., ECCV 2024) on PPA's latent search: after the latent stage, the outputs
    of the generator's hidden blocks ``feature_layers`` are searched in turn, each within an L1
    ball around where the latent stage left them. A prior whose generator is not a DCGAN (an
    exported program) exposes no features: the attack is then PPA's search, and ``extra`` says so.

    Defaults (blocks 2 and 3, radius 0.05 of the features' L1 norm, 20 steps each; two candidates
    per class, averaged pixel by pixel at the end) were chosen on the tuning half of the faces
    zoo's convolutional models: the highest mean verdict among the settings that lower no judge
    and keep at least half of PPA's detected faces, within the 120 s goal (README)."""

    name: ClassVar[str] = "ifgmi"
    features_optional: ClassVar[bool] = True
    candidates: int = 2
    final: FinalStep = "mean"
    feature_layers: tuple[int, ...] = (2, 3)


@dataclass(frozen=True, kw_only=True)
class PPDG(IFGMI):
    """PPDG-MI (Peng et al., NeurIPS 2024) on IF-GMI: after each round the generator is tuned so
    that the round's latents draw the round's reconstructions (the pseudo-private data), which
    raises the generator's density near the private identities; the next round searches the tuned
    generator from a fresh initial selection. ``rounds`` attacks in all, about ``rounds`` times
    IF-GMI's time (see :meth:`_Search.tune_prior`)."""

    name: ClassVar[str] = "ppdg"
    rounds: int = 2


@dataclass(frozen=True, kw_only=True)
class PLGMI(_LatentSearch):
    """PLG-MI's attack (Yuan et al. 2023): max-margin latent search in a class-conditional
    generator trained with the target's pseudo-labels; needs a conditional prior."""

    name: ClassVar[str] = "plg"
    conditional: ClassVar[bool | None] = True


GENERATIVE_ATTACKS: dict[str, Callable[..., _LatentSearch]] = {
    GMI.name: GMI,
    PPA.name: PPA,
    IFGMI.name: IFGMI,
    PPDG.name: PPDG,
    PLGMI.name: PLGMI,
}
