"""Private helpers shared by the black-box, learned and label-only attacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from invguard.attacks.base import AttackBase, InversionRequest, SearchContext
from invguard.errors import InvalidParameterError
from invguard.targets.base import QueryBudgetExceededError, Target

FloatArray = NDArray[np.float32]


def dct_matrix(n: int, k: int) -> torch.Tensor:
    """The first ``k`` rows of the orthonormal DCT-II matrix of size ``n`` (shape ``(k, n)``)."""
    freq = torch.arange(k, dtype=torch.float64)[:, None]
    pos = torch.arange(n, dtype=torch.float64)[None, :]
    mat = torch.cos(math.pi * (pos + 0.5) * freq / n) * math.sqrt(2.0 / n)
    mat[0] /= math.sqrt(2.0)
    return mat.float()


def check_bounds(bounds: object) -> tuple[float, float]:
    """Validate an attack's ``bounds``: a pair ``(low, high)`` of finite numbers with low < high."""
    ok = (
        isinstance(bounds, tuple)
        and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        and all(math.isfinite(b) for b in bounds)
        and bounds[0] < bounds[1]
    )
    if not ok:
        raise InvalidParameterError(
            f"The 'bounds' parameter must be (low, high) with low < high, got {bounds!r}"
        )
    assert isinstance(bounds, tuple)
    return float(bounds[0]), float(bounds[1])


def check_bool(name: str, value: object) -> bool:
    """Validate a boolean parameter, scikit-learn style."""
    if not isinstance(value, bool):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a bool, got {type(value).__name__} {value!r}"
        )
    return value


def auxiliary_images(request: InversionRequest, target: Target, attack: str) -> FloatArray:
    """The request's auxiliary images as float32, checked against the target's input shape."""
    aux = request.auxiliary
    if aux is None or len(aux) == 0:
        raise InvalidParameterError(
            f"attack '{attack}' needs auxiliary images: pass InversionRequest(auxiliary=...)"
        )
    arr = np.asarray(aux, dtype=np.float32)
    if tuple(arr.shape[1:]) != tuple(target.input_shape):
        raise InvalidParameterError(
            f"auxiliary images must have shape (m, {', '.join(map(str, target.input_shape))}), "
            f"got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InvalidParameterError("auxiliary images contain NaN or infinite values")
    return arr


@dataclass(frozen=True, kw_only=True)
class AuxiliaryImageAttack(AttackBase):
    """An attack that learns from the request's auxiliary images: a frozen config with no fields
    of its own, whose ``_check`` refuses a request without them before the clock starts."""

    def _check(self, target: Target, request: InversionRequest) -> None:
        auxiliary_images(request, target, self.name)

    def _augmented_auxiliary(
        self, ctx: SearchContext, copies: int, max_shift: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The auxiliary images and, after them, ``copies - 1`` flipped and shifted copies
        (:func:`augment_images`, drawn from ``ctx.torch_generator``)."""
        aux = torch.from_numpy(auxiliary_images(ctx.request, ctx.target, self.name))
        return aux, augment_images(aux, copies, max_shift, ctx.torch_generator)


def augment_images(
    x: torch.Tensor, copies: int, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """``x`` followed by ``copies - 1`` randomly flipped and shifted copies (edge padding), batched.

    Each copy draws, per image, a horizontal flip (probability 1/2) and an integer shift of up to
    ``max_shift`` pixels along each spatial axis. Inputs that are not images are repeated unchanged.
    """
    if copies <= 1:
        return x
    if x.ndim != 4:
        return x.repeat(copies, *([1] * (x.ndim - 1)))
    _, _, h, w = x.shape
    reps = x.repeat(copies - 1, 1, 1, 1)
    m = reps.shape[0]
    flip = torch.rand(m, generator=generator) < 0.5
    reps = torch.where(flip.view(-1, 1, 1, 1), reps.flip(-1), reps)
    if max_shift > 0:
        pad = max_shift
        padded = torch.nn.functional.pad(reps, (pad, pad, pad, pad), mode="replicate")
        dy = torch.randint(0, 2 * pad + 1, (m,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (m,), generator=generator)
        rows = (dy.view(-1, 1) + torch.arange(h).view(1, -1)).view(m, 1, h, 1)
        cols = (dx.view(-1, 1) + torch.arange(w).view(1, -1)).view(m, 1, 1, w)
        batch = torch.arange(m).view(m, 1, 1, 1)
        chan = torch.arange(reps.shape[1]).view(1, -1, 1, 1)
        reps = padded[batch, chan, rows, cols]
    return torch.cat([x, reps])


def predict_batched(target: Target, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """``target.predict`` on a torch batch (one call unless it is larger than ``batch``)."""
    outs = [
        torch.from_numpy(
            np.asarray(target.predict(x[i : i + batch].numpy()), dtype=np.float32).copy()
        )
        for i in range(0, len(x), batch)
    ]
    return torch.cat(outs) if outs else torch.zeros(0, target.num_classes)


class BatchSearch:
    """State shared by the batched black-box searches (one run, every class at once).

    ``classes``: the attacked classes; ``gen``: the run's torch generator; ``expired``: whether the
    time budget is spent. :meth:`ask` queries the target and, when a budget is spent, returns None
    and sets ``stop_reason`` (``"time_budget"`` or ``"query_budget"``); it stays "" until then.
    """

    def __init__(
        self,
        target: Target,
        classes: torch.Tensor,
        generator: torch.Generator,
        expired: Callable[[], bool],
    ) -> None:
        self.target = target
        self.classes = classes
        self.gen = generator
        self.expired = expired
        self.n = len(classes)
        self.stop_reason = ""

    def ask(self, x: torch.Tensor) -> torch.Tensor | None:
        """The target's scores for ``x``, or None (and ``stop_reason`` set) when a budget is spent."""
        if self.expired():
            self.stop_reason = "time_budget"
            return None
        try:
            return predict_batched(self.target, x)
        except QueryBudgetExceededError:
            self.stop_reason = "query_budget"
            return None
