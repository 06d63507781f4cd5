"""MI-FACE without gradients: zeroth-order model inversion through ``predict`` alone.

The attack minimises MI-FACE's cost (Fredrikson, Jha and Ristenpart, CCS 2015, with InvGuard's
measured L2 + TV prior, see :mod:`invguard.attacks.miface`)

    c(x) = -log max(s_y(x), floor) + l2_weight * mean((x - centre)^2) + tv_weight * TV(x)

where ``s_y`` is the score of class ``y`` *as the target returns it* (full, top-k truncated or
rounded), by Adam steps from a grey image, all classes in one batch, each stopping on its own when
its cost has not improved for ``patience`` steps; the best queried point is kept. The prior's
gradient is exact and free; the score term's gradient comes from antithetic query pairs
``x + s u``, ``x - s u`` with ``u`` Gaussian (NES: Wierstra et al. 2014, Ilyas et al. 2018) or
Rademacher (SPSA: Spall 1992) in a subspace of low spatial frequencies (the lowest
``H/downsample x W/downsample`` DCT coefficients of each channel, an orthonormal basis ``Q``, so that
``E[u u^T] = Q Q^T``). Every step queries each running class's image and its ``2 * directions``
perturbed copies in one ``predict`` call.

Two ways to turn the pairs into gradients (``pooling``):

* ``"none"``: the textbook estimate per class,
  ``g = 1/q * sum_i (L(x + s u_i) - L(x - s u_i)) / (2 s) * u_i`` with ``L = -log s_y``. Unbiased,
  but with few directions per step its noise swamps the prior (Adam turns it into a random walk):
  on the faces it reaches high target confidence with images the judge does not recognise.
* ``"jacobian"`` (default): each answer holds the scores of *all* classes, and the Jacobian of the
  class-centred logits barely changes over the images an attack visits (cosine 0.97 between grey and
  the reconstructions for the reference MLP). So every pair, whatever class it was drawn for,
  is a finite-difference measurement of that one Jacobian; a ridge least-squares fit over all pairs
  (:mod:`invguard.attacks._jacobian`) gives every class its gradient ``J^T (e_y - p)`` with ``p``
  the scores returned for its current image. The classes share the cost of learning ``J``.

Truncated or rounded scores (no ``PROBABILITIES`` capability): a pair says nothing about classes
hidden at either end, and rounding makes small scores useless (entries below ``visible_factor``
times the rounding step are ignored). Before the descent the attack then *probes*: it scores
``probe_images`` random smooth images, on which most classes show up somewhere, and spends
``probe_pairs`` antithetic pairs around them, balanced so that every class is seen about equally
often, to learn the Jacobian rows of classes hidden at the grey start. A hidden score counts as
half the row's smallest visible one in the cost, and a point where the class is hidden always
ranks behind one where it is visible. With ``recycle``, every answer is also scored for every
other attacked class: the best point seen for a class becomes its best iterate, and a class whose
own image hides it (or that a point beats by ``jump_margin``) restarts from there.

Cost: ``probe_images + 2 * probe_pairs`` queries, then ``1 + 2 * directions`` per running class per
step.

Measured limits (faces MLP, 40 identities, ``benchmarks/bench_blackbox.py``): with full scores the
attack reaches top-1 0.475 within 30,000 queries and stops by itself near 44,000 at about 0.58,
against 0.875 for white-box MI-FACE. Two causes, each measured by feeding the same loop exact
gradients: the low-frequency subspace alone caps it at 0.75 (``downsample=1`` is slower and worse
with estimated gradients), and the pooled Jacobian, although close to every local one (cosine
0.8-0.9 to the true subspace gradient), misses how the MLP's Jacobian changes along each class's
path. Forgetting old pairs or a per-class local correction from each class's own pairs did not
help measurably. With top-3 or rounded scores the probe alone costs about 28,000 queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from invguard.attacks._jacobian import JacobianEstimate
from invguard.attacks._shared import (
    BatchSearch,
    auxiliary_images,
    check_bool,
    check_bounds,
    dct_matrix,
)
from invguard.attacks.base import (
    AttackBase,
    InversionRequest,
    ProgressFn,
    SearchContext,
    SearchOutcome,
)
from invguard.attacks.miface import total_variation_and_grad
from invguard.errors import InvalidParameterError, check_choice, check_float, check_int
from invguard.targets.base import Capability, Target

Estimator = Literal["nes", "spsa"]
Pooling = Literal["jacobian", "none"]

RUNNING, DONE = 0, 2
HIDDEN = 1e6  # added to the cost of a point where the class's score is hidden
PROBE_CHUNK = 1024  # pairs per predict call while probing


@dataclass(frozen=True, kw_only=True)
class MIFaceZO(AttackBase):
    """Black-box MI-FACE driven by zeroth-order gradient estimates (see the module docstring).

    Defaults were chosen by measurement on the AT&T faces (``benchmarks/bench_blackbox.py``).
    ``probe_pairs=None`` probes ``20 * (H/downsample) * (W/downsample)`` pairs when the target's
    scores are truncated or rounded, none when they are full probabilities.
    """

    name: ClassVar[str] = "miface-zo"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.SCORES})

    estimator: Estimator = "spsa"
    pooling: Pooling = "jacobian"
    directions: int = 1
    sigma: float = 0.02
    downsample: int = 2
    max_iterations: int = 1000
    step_size: float = 0.01
    patience: int = 100
    min_improvement: float = 1e-4
    tv_weight: float = 0.05
    l2_weight: float = 3.0
    score_floor: float = 1e-10
    ridge: float = 1e-3
    visible_factor: float = 5.0
    probe_pairs: int | None = None
    probe_images: int = 2000
    probe_amplitude: float = 0.4
    probe_downsample: int = 8
    recycle: bool = True
    jump_margin: float = 0.5
    start: Literal["grey", "mean", "probe"] = "grey"
    start_value: float = 0.5
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_choice("estimator", self.estimator, ("nes", "spsa"))
        check_choice("pooling", self.pooling, ("jacobian", "none"))
        check_int("directions", self.directions, minimum=1)
        check_float("sigma", self.sigma, minimum=0.0, min_inclusive=False)
        check_int("downsample", self.downsample, minimum=1)
        check_int("max_iterations", self.max_iterations, minimum=1)
        check_float("step_size", self.step_size, minimum=0.0, min_inclusive=False)
        check_int("patience", self.patience, minimum=1)
        check_float("min_improvement", self.min_improvement, minimum=0.0)
        check_float("tv_weight", self.tv_weight, minimum=0.0)
        check_float("l2_weight", self.l2_weight, minimum=0.0)
        check_float("score_floor", self.score_floor, minimum=0.0, maximum=1.0, min_inclusive=False)
        check_float("ridge", self.ridge, minimum=0.0, min_inclusive=False)
        check_float("visible_factor", self.visible_factor, minimum=0.0)
        if self.probe_pairs is not None:
            check_int("probe_pairs", self.probe_pairs, minimum=0)
        check_int("probe_images", self.probe_images, minimum=1)
        check_float("probe_amplitude", self.probe_amplitude, minimum=0.0, min_inclusive=False)
        check_int("probe_downsample", self.probe_downsample, minimum=1)
        check_bool("recycle", self.recycle)
        check_float("jump_margin", self.jump_margin, minimum=0.0)
        check_choice("start", self.start, ("grey", "mean", "probe"))
        lo, hi = check_bounds(self.bounds)
        check_float("start_value", self.start_value, minimum=lo, maximum=hi)

    @property
    def queries_per_step(self) -> int:
        """Queries one running class costs per step: its image and ``2 * directions`` neighbours."""
        return 1 + 2 * self.directions

    def _check(self, target: Target, request: InversionRequest) -> None:
        if self.start == "mean":
            auxiliary_images(request, target, self.name)
        c = target.num_classes
        sub_dim = int(np.prod(_subspace_shape(tuple(target.input_shape), self.downsample)))
        full = Capability.PROBABILITIES in target.capabilities
        if (
            self.pooling == "jacobian"
            and not full
            and not JacobianEstimate.per_class_fits(c, sub_dim)
        ):
            raise InvalidParameterError(
                f"The 'downsample' parameter is too small for a target with truncated or rounded "
                f"scores and {c} classes: the per-class Jacobian estimate needs {c} x "
                f"{sub_dim}^2 entries; use a larger downsample"
            )

    def _search(self, ctx: SearchContext) -> SearchOutcome:
        """Invert every requested class at once, in one batch."""
        target, classes = ctx.target, ctx.classes
        if self.start == "mean":
            centre = torch.from_numpy(
                auxiliary_images(ctx.request, target, self.name).mean(axis=0)
            ).clamp(*self.bounds)
        else:
            centre = torch.full(tuple(target.input_shape), self.start_value)
        full = Capability.PROBABILITIES in target.capabilities
        state = _ZORun(
            self, target, centre, torch.from_numpy(classes), ctx.torch_generator, full, ctx.expired
        )
        state.probe()
        state.loop(ctx.progress)
        return SearchOutcome(
            reconstructions=state.best_x,
            target_confidence=state.best_score,
            iterations=state.iters,
            stop_reasons=state.reasons,
            extra={
                "queries_per_step": self.queries_per_step,
                "probe_queries": state.probe_spent,
                "subspace_dim": state.sub_dim,
                "jumps": state.jumps.numpy().astype(np.int64).tolist(),
                "never_visible": [
                    int(c)
                    for c, v in zip(classes, state.best_visible.tolist(), strict=True)
                    if not v
                ],
            },
        )


def _subspace_shape(shape: tuple[int, ...], downsample: int) -> tuple[int, ...]:
    """The shape of the low-frequency subspace: ``(C, ceil(H / downsample), ceil(W / downsample))``
    for images, the input shape itself otherwise."""
    if len(shape) != 3:
        return shape
    c, h, w = shape
    return (c, max(1, math.ceil(h / downsample)), max(1, math.ceil(w / downsample)))


def visible_scores(scores: torch.Tensor) -> torch.Tensor:
    """Replace hidden (zero) scores by half the row's smallest positive score.

    Under top-k truncation a hidden class scores at most the k-th visible score; under rounding to
    ``d`` decimals at most ``0.5 * 10**-d``, which is at most half the smallest visible score.
    Rows with no positive score are left unchanged.
    """
    positive = scores > 0
    smallest = torch.where(positive, scores, torch.full_like(scores, math.inf)).min(1).values
    fill = torch.where(torch.isfinite(smallest), 0.5 * smallest, torch.zeros_like(smallest))
    return torch.where(positive, scores, fill.view(-1, 1))


def rounding_step(scores: torch.Tensor) -> float:
    """The rounding step of ``scores`` (``10**-d`` if all are multiples of it, d <= 6), else 0."""
    positive = scores[scores > 0].double()
    if positive.numel() == 0:
        return 0.0
    for decimals in range(7):
        step = 10.0**-decimals
        if bool(((positive / step - torch.round(positive / step)).abs() < 1e-3).all()):
            return step
    return 0.0


class _ZORun(BatchSearch):
    """The state of one black-box inversion: all classes in one batch, per-sample bookkeeping."""

    def __init__(
        self,
        cfg: MIFaceZO,
        target: Target,
        centre: torch.Tensor,
        classes: torch.Tensor,
        generator: torch.Generator,
        full: bool,
        expired: Callable[[], bool],
    ) -> None:
        super().__init__(target, classes, generator, expired)
        self.cfg = cfg
        self.centre = centre
        self.full = full
        n = self.n
        self.shape = tuple(centre.shape)
        self.spatial = len(self.shape) == 3
        self.sub_shape = _subspace_shape(self.shape, cfg.downsample)
        if self.spatial:
            _, h, w = self.shape
            _, kh, kw = self.sub_shape
            self.basis_h = dct_matrix(h, kh).T.contiguous()  # (h, kh)
            self.basis_w = dct_matrix(w, kw)  # (kw, w)
        dim = int(np.prod(self.shape))
        self.sub_dim = int(np.prod(self.sub_shape))
        # A unit sigma moves pixels by 1 RMS: the orthonormal subspace draws have RMS sqrt(d/D).
        self.scale = math.sqrt(dim / self.sub_dim)
        c = target.num_classes
        self.jac = JacobianEstimate(
            c,
            self.sub_dim,
            ridge=cfg.ridge,
            refit_every=max(1, self.sub_dim // 1024) if full else 10,
        )
        self.quantum = 0.0
        self.x = centre.expand(n, *self.shape).clone()
        self.m = torch.zeros_like(self.x)
        self.v = torch.zeros_like(self.x)
        self.t = torch.zeros(n)
        self.status = torch.full((n,), RUNNING, dtype=torch.long)
        self.best_cost = torch.full((n,), math.inf)
        self.best_x = self.x.clone()
        self.best_score = torch.zeros(n)
        self.best_visible = torch.zeros(n, dtype=torch.bool)
        self.since_best = torch.zeros(n, dtype=torch.long)
        self.iters = torch.zeros(n, dtype=torch.long)
        self.jumps = torch.zeros(n, dtype=torch.long)
        self.reasons = ["max_iterations"] * n
        self.probe_spent = 0

    # -- the objective --------------------------------------------------------------------------
    def prior(self, x: torch.Tensor, *, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """L2 + TV prior per image (and its exact gradient when ``grad``)."""
        cfg = self.cfg
        diff = x - self.centre
        cost = cfg.l2_weight * diff.flatten(1).pow(2).mean(1)
        g = diff * (2.0 * cfg.l2_weight / diff[0].numel()) if grad else None
        if cfg.tv_weight > 0 and self.spatial:
            tv, g_tv = total_variation_and_grad(x)
            cost = cost + cfg.tv_weight * tv
            if g is not None:
                g = g + cfg.tv_weight * g_tv
        return cost, g

    def draw(self, r: int, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Subspace coordinates ``z`` ``(r, q, d)`` and pixel directions ``u = Q z``."""
        size = (r, q, *self.sub_shape)
        if self.cfg.estimator == "nes":
            z = torch.randn(size, generator=self.gen)
        else:
            z = torch.randint(0, 2, size, generator=self.gen).float().mul_(2).sub_(1)
        return z.reshape(r, q, -1), self.to_pixels(z)

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Map subspace coordinates (shaped ``(..., *sub_shape)``) to pixel space."""
        if not self.spatial:
            return z
        return self.basis_h @ z @ self.basis_w

    def query(self, x: torch.Tensor) -> torch.Tensor | None:
        """Scores for ``x``, or None (and the stop reason set) when a budget is exhausted."""
        scores = self.ask(x)
        if scores is not None and not self.full:
            step = rounding_step(scores)
            self.quantum = step if self.quantum == 0.0 else min(self.quantum, step or self.quantum)
        return scores

    def add_pairs(
        self, z: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, step: torch.Tensor
    ) -> None:
        """Feed antithetic pairs (scores at both ends, ``step`` per pair) to the Jacobian estimate."""
        floor = self.cfg.score_floor
        diff = (torch.log(plus.clamp_min(floor)) - torch.log(minus.clamp_min(floor))) / (
            2.0 * step.view(-1, 1)
        )
        least = max(self.cfg.visible_factor * self.quantum, 0.0)
        seen = (plus > least) & (minus > least)
        self.jac.add(z, diff, seen)

    # -- probing (truncated / rounded scores) ---------------------------------------------------
    def probe(self) -> None:
        """Learn the Jacobian rows of hidden classes around random smooth images; see the module
        docstring. With ``start="probe"`` each class also starts from its best probe image."""
        cfg = self.cfg
        pairs = cfg.probe_pairs
        if pairs is None:
            pairs = 0 if self.full else 20 * self.sub_dim
        if cfg.pooling != "jacobian":
            pairs = 0
        if pairs == 0 and cfg.start != "probe":
            return
        lo, hi = cfg.bounds
        size = cfg.probe_images
        if self.spatial:
            c, h, w = self.shape
            kh = max(1, math.ceil(h / cfg.probe_downsample))
            kw = max(1, math.ceil(w / cfg.probe_downsample))
            z = torch.randn(size, c, kh, kw, generator=self.gen)
            u = dct_matrix(h, kh).T @ z @ dct_matrix(w, kw)
        else:
            u = torch.randn(size, *self.shape, generator=self.gen)
        rms = u.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)
        images = self.centre + cfg.probe_amplitude * u / rms.view(-1, *([1] * len(self.shape)))
        images = images.clamp_(lo, hi)
        scores = self.query(images)
        if scores is None:
            return
        self.probe_spent += size
        if cfg.start == "probe":
            self._start_from(images, scores)
        if pairs == 0:
            return
        # bases: for every class, images on which it is visible (random images if none)
        least = cfg.visible_factor * self.quantum
        visible = scores > least
        per_class = math.ceil(pairs / scores.shape[1])
        bases = []
        for c in range(scores.shape[1]):
            pool = visible[:, c].nonzero().squeeze(1)
            if pool.numel() == 0:
                pool = torch.arange(size)
            bases.append(pool[torch.randint(len(pool), (per_class,), generator=self.gen)])
        order = torch.cat(bases)[torch.randperm(per_class * scores.shape[1], generator=self.gen)]
        order = order[:pairs]
        step = torch.tensor(cfg.sigma * self.scale)
        for i in range(0, len(order), PROBE_CHUNK):
            base = images[order[i : i + PROBE_CHUNK]]
            zc, uc = self.draw(len(base), 1)
            uc = uc[:, 0]
            pts = torch.cat([base + step * uc, base - step * uc]).clamp_(lo, hi)
            answer = self.query(pts)
            if answer is None:
                return
            self.probe_spent += len(pts)
            k = len(base)
            self.add_pairs(zc[:, 0], answer[:k], answer[k:], step.expand(k))
        self.jac.refresh(force=True)

    def _start_from(self, images: torch.Tensor, scores: torch.Tensor) -> None:
        losses = -torch.log(visible_scores(scores).clamp_min(self.cfg.score_floor))
        prior_pts, _ = self.prior(images, grad=False)
        score = scores[:, self.classes]
        cost = torch.where(
            score > 0,
            losses[:, self.classes] + prior_pts.view(-1, 1),
            torch.full_like(score, math.inf),
        )
        best, where = cost.min(0)
        found = torch.isfinite(best)
        idx = found.nonzero().squeeze(1)
        self.x[idx] = images[where[idx]]
        self.best_x[idx] = images[where[idx]]
        self.best_cost[idx] = best[idx]
        self.best_score[idx] = score[where[idx], idx]
        self.best_visible |= found

    # -- the descent ----------------------------------------------------------------------------
    def loop(self, progress: ProgressFn | None) -> None:
        cfg = self.cfg
        q = cfg.directions
        lo, hi = cfg.bounds
        nd = len(self.shape)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for it in range(1, cfg.max_iterations + 1):
            if self.stop_reason:
                break
            run = (self.status == RUNNING).nonzero().squeeze(1)
            if run.numel() == 0:
                break
            r = run.numel()
            xr = self.x[run]
            z, u = self.draw(r, q)
            step = torch.full((r,), cfg.sigma * self.scale)
            shift = step.view(r, 1, *([1] * nd)) * u
            pts = torch.cat([xr.unsqueeze(1), xr.unsqueeze(1) + shift, xr.unsqueeze(1) - shift], 1)
            flat = pts.clamp_(lo, hi).reshape(r * (1 + 2 * q), *self.shape)
            answer = self.query(flat)
            if answer is None:
                break
            scores = answer
            self.iters[run] += 1
            losses = -torch.log(visible_scores(scores).clamp_min(cfg.score_floor))  # (P, C)
            prior_pts, _ = self.prior(flat, grad=False)
            self._keep_best(run, flat, scores, losses, prior_pts)

            cls = self.classes[run]
            per = scores.view(r, 1 + 2 * q, -1)
            own = losses.view(r, 1 + 2 * q, -1).gather(
                2, cls.view(r, 1, 1).expand(r, 1 + 2 * q, 1)
            )[..., 0]
            if cfg.pooling == "jacobian":
                self.add_pairs(
                    z.reshape(r * q, -1),
                    per[:, 1 : 1 + q].reshape(r * q, -1),
                    per[:, 1 + q :].reshape(r * q, -1),
                    step.repeat_interleave(q),
                )
                self.jac.refresh()
                # d log p_y = J^T (e_y - p), p the scores returned for the image (hidden = 0)
                w = -per[:, 0].clone()
                w[torch.arange(r), cls] += 1.0
                g = -self.to_pixels(self.jac.gradient(w).view(r, *self.sub_shape))
            else:
                diff = (own[:, 1 : 1 + q] - own[:, 1 + q :]) / (2.0 * step.view(r, 1))
                g = (diff.view(r, q, *([1] * nd)) * u).mean(1)
            prior_x, g_prior = self.prior(xr, grad=True)
            assert g_prior is not None
            grad = g + g_prior
            hidden = per[torch.arange(r), 0, cls] <= 0
            centre_cost = own[:, 0] + prior_x + HIDDEN * hidden

            # Adam, with per-sample step counts (a sample restarts after a jump).
            self.t[run] += 1
            t = self.t[run].view(r, *([1] * nd))
            m = self.m[run].mul_(beta1).add_(grad, alpha=1 - beta1)
            v = self.v[run].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            lr = cfg.step_size * torch.sqrt(1 - beta2**t) / (1 - beta1**t)
            self.m[run], self.v[run] = m, v
            self.x[run] = (xr - lr * m / (v.sqrt() + eps)).clamp_(lo, hi)

            self._jump(run, centre_cost)
            self._stop(run)
            if progress is not None and it % 10 == 0:
                progress(it, cfg.max_iterations)
        for j in (self.status == RUNNING).nonzero().squeeze(1).tolist():
            self.reasons[j] = self.stop_reason or "max_iterations"
        if progress is not None:
            progress(cfg.max_iterations, cfg.max_iterations)

    def _keep_best(
        self,
        run: torch.Tensor,
        flat: torch.Tensor,
        scores: torch.Tensor,
        losses: torch.Tensor,
        prior_pts: torch.Tensor,
    ) -> None:
        """Update each class's best point from this batch (all points when recycling).

        A point where the class's score is hidden (0) only counts for the class's own samples,
        behind every point where it is visible (``HIDDEN`` is added to its cost).
        """
        cfg = self.cfg
        per = 1 + 2 * cfg.directions
        cols = (self.status != DONE).nonzero().squeeze(1) if cfg.recycle else run
        owner = run.repeat_interleave(per)
        own = owner.view(-1, 1) == cols.view(1, -1)  # (P, k)
        score = scores[:, self.classes[cols]]
        cost = losses[:, self.classes[cols]] + prior_pts.view(-1, 1)
        hidden_cost = torch.where(own, cost + HIDDEN, torch.full_like(cost, math.inf))
        cost = torch.where(score > 0, cost, hidden_cost)
        best_cost, where = cost.min(0)
        k = torch.arange(len(cols))
        picked = score[where, k]
        better = best_cost < self.best_cost[cols]
        improved = best_cost < self.best_cost[cols] - cfg.min_improvement
        upd = cols[better]
        self.best_cost[upd] = best_cost[better]
        self.best_x[upd] = flat[where[better]]
        self.best_score[upd] = picked[better]
        self.best_visible[upd] |= picked[better] > 0
        self.since_best[cols] = torch.where(
            improved, torch.zeros_like(self.since_best[cols]), self.since_best[cols] + 1
        )

    def _jump(self, run: torch.Tensor, centre_cost: torch.Tensor) -> None:
        """Restart classes from a recycled point that beats their current image by a margin."""
        if not self.cfg.recycle:
            return
        far = self.best_cost[run] < centre_cost - self.cfg.jump_margin
        idx = run[far]
        if idx.numel():
            self.x[idx] = self.best_x[idx]
            self.m[idx] = 0.0
            self.v[idx] = 0.0
            self.t[idx] = 0.0
            self.jumps[idx] += 1

    def _stop(self, run: torch.Tensor) -> None:
        cfg = self.cfg
        stalled = (self.since_best >= cfg.patience) & (self.status == RUNNING)
        capped = torch.zeros_like(stalled)
        capped[run] = self.iters[run] >= cfg.max_iterations
        for j in (stalled | capped).nonzero().squeeze(1).tolist():
            self.reasons[j] = "no_improvement" if bool(stalled[j]) else "max_iterations"
            self.status[j] = DONE
