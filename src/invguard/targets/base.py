"""The target contract: what an attack may ask of the model under assessment.

A target declares its :class:`Capability` set and answers ``predict(x)`` with an ``(n, classes)``
float array: the scores it exposes (full probabilities, or what an output policy leaves of them;
one-hot rows when it exposes labels only). Every target counts the queries it answers, one per input,
and can enforce a hard query budget. Targets wrap the user's model; they never subclass it.
This module is the contract only: adapters share :class:`~invguard.targets.adapter.BaseTarget`,
restrictions and views live in :mod:`invguard.targets.output`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvGuardError, TargetError, check_int


class Capability(StrEnum):
    """What a target gives an attacker."""

    PROBABILITIES = "probabilities"  # the full, exact probability vector
    SCORES = "scores"  # some scores: full, top-k truncated or rounded
    LOGITS = "logits"  # pre-softmax scores
    LABELS = "labels"  # the predicted label (every target)
    GRADIENTS = "gradients"  # white-box: gradients with respect to the input


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """What a target's ``predict`` returns.

    ``scores=False``: labels only (``predict`` gives one-hot rows). Otherwise probabilities, of which
    only the ``top_k`` highest are kept (the rest are 0) when set, rounded to ``decimals`` when set.
    """

    scores: bool = True
    top_k: int | None = None
    decimals: int | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None:
            check_int("top_k", self.top_k, minimum=1)
        if self.decimals is not None:
            check_int("decimals", self.decimals, minimum=0)

    @property
    def full(self) -> bool:
        """Exact, complete probability vectors."""
        return self.scores and self.top_k is None and self.decimals is None

    def capabilities(self) -> frozenset[Capability]:
        if not self.scores:
            return frozenset({Capability.LABELS})
        caps = {Capability.SCORES, Capability.LABELS}
        if self.full:
            caps.add(Capability.PROBABILITIES)
        return frozenset(caps)

    def describe(self) -> str:
        if not self.scores:
            return "labels only"
        parts = ["full probabilities" if self.top_k is None else f"top-{self.top_k} scores"]
        if self.decimals is not None:
            parts.append(f"rounded to {self.decimals} decimals")
        return ", ".join(parts)


FULL_PROBABILITIES = OutputSpec()


class QueryBudgetExceededError(InvGuardError):
    """A query would exceed the target's hard budget; the query was not sent."""


class QueryCounter:
    """Counts queries (one per input) and refuses any batch that would exceed ``budget``."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = None if budget is None else check_int("query_budget", budget, minimum=0)
        self.count = 0

    def charge(self, n: int) -> None:
        if self.budget is not None and self.count + n > self.budget:
            raise QueryBudgetExceededError(
                f"query budget of {self.budget} exhausted: {self.count} spent, "
                f"a batch of {n} more refused"
            )
        self.count += n

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.count


@runtime_checkable
class Target(Protocol):
    """Anything an attack can query."""

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def queries(self) -> int: ...

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Scores of shape ``(n, num_classes)`` for inputs of shape ``(n, *input_shape)``."""
        ...


def check_batch(
    x: np.ndarray, input_shape: tuple[int, ...], name: str = "x"
) -> NDArray[np.float32]:
    """Validate a batch for ``predict``: shape ``(n, *input_shape)``, finite values, float32."""
    arr = np.asarray(x)
    if arr.ndim == len(input_shape):
        arr = arr[None]
    if tuple(arr.shape[1:]) != tuple(input_shape):
        raise TargetError(
            f"'{name}' must have shape (n, {', '.join(map(str, input_shape))}), got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise TargetError(f"'{name}' must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise TargetError(f"'{name}' contains NaN or infinite values")
    return arr


def require(target: Target, needed: frozenset[Capability], attack: str) -> None:
    """Raise :class:`TargetError` unless ``target`` offers every capability in ``needed``."""
    missing = needed - target.capabilities
    if missing:
        raise TargetError(
            f"attack '{attack}' needs {', '.join(sorted(missing))} from the target, which offers "
            f"only {', '.join(sorted(target.capabilities)) or 'nothing'}"
        )


@runtime_checkable
class GradientTarget(Target, Protocol):
    """A white-box target: adds ``class_gradient`` on torch tensors living on ``device``."""

    @property
    def device(self) -> Any: ...

    def class_gradient(
        self, x: Any, classes: Any, *, quantity: Literal["probability", "log_probability", "logit"]
    ) -> tuple[Any, Any]:
        """``(logits, d quantity[classes] / dx)`` for a torch batch ``x``."""
        ...


@runtime_checkable
class DifferentiableTarget(GradientTarget, Protocol):
    """A white-box target whose logits can be back-propagated through (``differentiable_logits``)."""

    def differentiable_logits(self, x: Any) -> Any:
        """Logits of a torch batch ``x`` with the autograd graph kept."""
        ...
