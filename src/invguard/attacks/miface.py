"""MI-FACE: white-box model inversion by gradient descent in input space.

Fredrikson, Jha and Ristenpart, "Model Inversion Attacks that Exploit Confidence Information and
Basic Countermeasures", ACM CCS 2015, Algorithm 1. For a target class ``y`` the attack minimises

    c(x) = L_y(f(x)) + AuxTerm(x)

where the paper's ``L_y`` is ``1 - f_y(x)`` (``loss="probability"``); ``"log_probability"``
(cross-entropy) and ``"logit"`` are offered as well. ``AuxTerm`` is an image prior: total variation
and an L2 penalty on the distance from a centre image
(the grey start value, or the mean of the attacker's auxiliary images). After every step the image is clipped to the valid range and, every
``denoise_every`` steps, passed through the paper's ``Process`` step (here a Gaussian denoise followed
by unsharp-mask sharpening). The attack keeps the best iterate (the paper's ``argmin``) and stops a
sample when its target confidence reaches ``confidence_threshold`` (the paper's gamma), when its cost
has not improved for ``patience`` steps (beta), or after ``max_iterations`` (alpha).

All requested classes are inverted together in one batch; finished samples leave the batch, so the
cost of an iteration falls as samples converge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from invguard.attacks.base import (
    AttackBase,
    InversionRequest,
    ProgressFn,
    SearchContext,
    SearchOutcome,
)
from invguard.errors import InvalidParameterError, TargetError, check_choice, check_float, check_int
from invguard.targets.base import Capability, GradientTarget, QueryBudgetExceededError, Target
from invguard.targets.pytorch import GRADIENT_QUANTITIES, GradientQuantity

StartKind = Literal["grey", "mean", "random"]


@dataclass(frozen=True, kw_only=True)
class MIFace(AttackBase):
    """MI-FACE configuration (keyword-only, immutable). See the module docstring for the paper.

    Defaults were chosen by measurement on the AT&T faces (``benchmarks/ablation_miface.py``).
    """

    name: ClassVar[str] = "miface"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.GRADIENTS})

    max_iterations: int = 1000
    step_size: float = 0.01
    optimizer: Literal["adam", "sgd"] = "adam"
    loss: GradientQuantity = "log_probability"
    confidence_threshold: float | None = None
    patience: int = 100
    min_improvement: float = 1e-4
    tv_weight: float = 0.05
    l2_weight: float = 3.0
    denoise_every: int = 0
    denoise_sigma: float = 0.6
    sharpen: float = 0.0
    start: StartKind = "grey"
    start_value: float = 0.5
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_int("max_iterations", self.max_iterations, minimum=1)
        check_float("step_size", self.step_size, minimum=0.0, min_inclusive=False)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_choice("loss", self.loss, GRADIENT_QUANTITIES)
        if self.confidence_threshold is not None:
            check_float("confidence_threshold", self.confidence_threshold, minimum=0.0, maximum=1.0)
        check_int("patience", self.patience, minimum=1)
        check_float("min_improvement", self.min_improvement, minimum=0.0)
        check_float("tv_weight", self.tv_weight, minimum=0.0)
        check_float("l2_weight", self.l2_weight, minimum=0.0)
        check_int("denoise_every", self.denoise_every, minimum=0)
        check_float("denoise_sigma", self.denoise_sigma, minimum=0.0, min_inclusive=False)
        check_float("sharpen", self.sharpen, minimum=0.0)
        check_choice("start", self.start, ("grey", "mean", "random"))
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InvalidParameterError(
                f"The 'bounds' parameter must be (low, high) with low < high, got {self.bounds!r}"
            )
        check_float("start_value", self.start_value, minimum=lo, maximum=hi)

    def _check(self, target: Target, request: InversionRequest) -> None:
        _gradient_target(target, self.name)
        if self.start == "mean":
            _auxiliary_mean(request, target)

    def _search(self, ctx: SearchContext) -> SearchOutcome:
        """Invert every requested class at once, in one batch."""
        target = _gradient_target(ctx.target, self.name)
        device = torch.device(target.device)
        x0, centre = self._start_points(ctx)
        out_x, out_conf, out_iter, reasons = _descend(
            self,
            target,
            x0.to(device),
            centre.to(device),
            torch.from_numpy(ctx.classes).to(device),
            ctx.progress,
            ctx.expired,
        )
        return SearchOutcome(
            reconstructions=out_x,
            target_confidence=out_conf,
            iterations=out_iter,
            stop_reasons=reasons,
        )

    def _start_points(self, ctx: SearchContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Start images and the centre of the L2 prior (grey, or the auxiliary mean)."""
        shape = (len(ctx.classes), *ctx.target.input_shape)
        lo, hi = self.bounds
        grey = torch.full(shape, self.start_value)
        if self.start == "grey":
            return grey, grey
        if self.start == "random":
            return lo + (hi - lo) * torch.rand(shape, generator=ctx.torch_generator), grey
        mean = torch.from_numpy(_auxiliary_mean(ctx.request, ctx.target))
        start = mean.clamp(lo, hi).expand(shape).clone()
        return start, start


def _gradient_target(target: Target, attack: str) -> GradientTarget:
    """``target`` as a :class:`GradientTarget`, or a one-line :class:`TargetError`."""
    if not isinstance(target, GradientTarget):
        raise TargetError(f"attack '{attack}' needs a target with class_gradient()")
    return target


def _auxiliary_mean(request: InversionRequest, target: Target) -> NDArray[np.float32]:
    """The mean auxiliary image (``start="mean"``), checked against the target's input shape."""
    aux = request.auxiliary
    if aux is None or len(aux) == 0:
        raise InvalidParameterError(
            "start='mean' needs auxiliary images: pass InversionRequest(auxiliary=...)"
        )
    if tuple(aux.shape[1:]) != tuple(target.input_shape):
        raise InvalidParameterError(
            f"auxiliary images must have shape (m, {', '.join(map(str, target.input_shape))}), "
            f"got {aux.shape}"
        )
    mean: NDArray[np.float32] = np.asarray(aux, dtype=np.float32).mean(axis=0)
    return mean


TV_EPS = 1e-6


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Smoothed isotropic total variation per sample, averaged over pixels; shape ``(n,)``."""
    return total_variation_and_grad(x)[0]


def total_variation_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`total_variation` and its gradient, in closed form (no autograd graph).

    ``TV(x) = mean_ij sqrt(dx_ij^2 + dy_ij^2 + eps)`` with forward differences
    ``dx_ij = x[i, j+1] - x[i, j]`` and ``dy_ij = x[i+1, j] - x[i, j]``.
    """
    base = x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - base
    dy = x[..., 1:, :-1] - base
    t = torch.sqrt(dx * dx + dy * dy + TV_EPS)
    count = t.shape[-1] * t.shape[-2] * (t.shape[-3] if t.ndim == 4 else 1)
    value = t.flatten(1).sum(1) / count
    gx = dx / (t * count)
    gy = dy / (t * count)
    grad = torch.zeros_like(x)
    grad[..., :-1, 1:] += gx
    grad[..., 1:, :-1] += gy
    grad[..., :-1, :-1] -= gx + gy
    return value, grad


def _gaussian_kernel(sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    ax = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k1 = torch.exp(-(ax**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    k2 = torch.outer(k1, k1)
    return k2.expand(channels, 1, *k2.shape).contiguous()


def denoise(x: torch.Tensor, kernel: torch.Tensor, sharpen: float) -> torch.Tensor:
    """The ``Process`` step: Gaussian denoise, then unsharp-mask sharpening by ``sharpen``."""
    pad = kernel.shape[-1] // 2
    c = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="replicate"), kernel, groups=c)

    out = blur(x)
    if sharpen > 0:
        out = out + sharpen * (out - blur(out))
    return out


def _descend(
    cfg: MIFace,
    target: GradientTarget,
    x0: torch.Tensor,
    centre: torch.Tensor,
    classes: torch.Tensor,
    progress: ProgressFn | None,
    expired: Callable[[], bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Batched descent with per-sample stopping. Returns best images, confidences, iterations.

    A query budget hit (``QueryBudgetExceededError``) or the time budget (``expired()``) ends
    every running sample with its best iterate so far.
    """
    n = x0.shape[0]
    device = x0.device
    kernel = (
        _gaussian_kernel(cfg.denoise_sigma, x0.shape[1], device)
        if cfg.denoise_every and x0.ndim == 4
        else None
    )

    # Outputs, indexed by original sample position.
    out_x = x0.clone()
    out_conf = torch.zeros(n, device=device)
    out_iter = torch.zeros(n, dtype=torch.long, device=device)
    reasons = ["max_iterations"] * n

    # Working set: only samples still running; compacted when some finish.
    idx = torch.arange(n, device=device)
    x = x0.clone()
    anchor = centre
    cls = classes
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    best_cost = torch.full((n,), math.inf, device=device)
    best_x = x.clone()
    best_conf = torch.zeros(n, device=device)
    since_best = torch.zeros(n, dtype=torch.long, device=device)

    budget_reason = ""
    for it in range(1, cfg.max_iterations + 1):
        if expired():
            budget_reason = "time_budget"
        else:
            try:
                logits, grad_q = target.class_gradient(x, cls, quantity=cfg.loss)
            except QueryBudgetExceededError:
                budget_reason = "query_budget"
        if budget_reason:
            out_x[idx], out_conf[idx], out_iter[idx] = best_x, best_conf, it - 1
            for o in idx.tolist():
                reasons[o] = budget_reason
            break
        cost, conf, grad = _cost_and_grad(cfg, logits, grad_q, x, anchor, cls)

        # Keep the best iterate (the paper returns argmin_i c(x_i)).
        improved = cost < best_cost - cfg.min_improvement
        better = cost < best_cost
        best_cost = torch.where(better, cost, best_cost)
        best_conf = torch.where(better, conf, best_conf)
        best_x = torch.where(better.view(-1, *([1] * (x.ndim - 1))), x, best_x)
        since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)

        reached = (
            conf >= cfg.confidence_threshold
            if cfg.confidence_threshold is not None
            else torch.zeros_like(improved)
        )
        stalled = since_best >= cfg.patience
        done = reached | stalled
        if it == cfg.max_iterations:
            done = torch.ones_like(done)
        if bool(done.any()):
            d = done.nonzero().squeeze(1)
            orig = idx[d]
            out_x[orig] = best_x[d]
            out_conf[orig] = best_conf[d]
            out_iter[orig] = it
            for o, r, s in zip(
                orig.tolist(), reached[d].tolist(), stalled[d].tolist(), strict=True
            ):
                reasons[o] = "confidence" if r else ("no_improvement" if s else "max_iterations")
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                if progress is not None:
                    progress(cfg.max_iterations, cfg.max_iterations)
                break
            idx, x, cls, grad, anchor = idx[keep], x[keep], cls[keep], grad[keep], anchor[keep]
            m, v = m[keep], v[keep]
            best_cost, best_x, best_conf = best_cost[keep], best_x[keep], best_conf[keep]
            since_best = since_best[keep]

        # Gradient step on the still-running samples.
        x = _step(cfg, x, grad, m, v, it, kernel)
        if progress is not None and it % 10 == 0:
            progress(it, cfg.max_iterations)
    return out_x, out_conf, out_iter, reasons


def _cost_and_grad(
    cfg: MIFace,
    logits: torch.Tensor,
    grad_q: torch.Tensor,
    x: torch.Tensor,
    anchor: torch.Tensor,
    cls: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample cost, target confidence and cost gradient (``grad_q`` is negated in place)."""
    logp = torch.log_softmax(logits, dim=1).gather(1, cls.view(-1, 1)).squeeze(1)
    conf = logp.exp()
    if cfg.loss == "probability":
        cost = 1.0 - conf
    elif cfg.loss == "log_probability":
        cost = -logp
    else:
        cost = -logits.gather(1, cls.view(-1, 1)).squeeze(1)
    grad = grad_q.neg_()
    if cfg.l2_weight > 0:
        diff = x - anchor
        cost = cost + cfg.l2_weight * diff.flatten(1).pow(2).mean(1)
        grad.add_(diff, alpha=2.0 * cfg.l2_weight / diff[0].numel())
    if cfg.tv_weight > 0 and x.ndim == 4:
        tv, g_tv = total_variation_and_grad(x)
        cost = cost + cfg.tv_weight * tv
        grad.add_(g_tv, alpha=cfg.tv_weight)
    return cost, conf, grad


def _step(
    cfg: MIFace,
    x: torch.Tensor,
    grad: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    it: int,
    kernel: torch.Tensor | None,
) -> torch.Tensor:
    """One optimiser step (Adam moments ``m``, ``v`` updated in place), ``Process``, clipping."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    if cfg.optimizer == "adam":
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = cfg.step_size * math.sqrt(1 - beta2**it) / (1 - beta1**it)
        x = torch.addcdiv(x, m, v.sqrt().add_(eps), value=-step)
    else:
        x = x.add(grad, alpha=-cfg.step_size)
    if kernel is not None and it % cfg.denoise_every == 0:
        x = denoise(x, kernel, cfg.sharpen)
    lo, hi = cfg.bounds
    return x.clamp_(lo, hi)
