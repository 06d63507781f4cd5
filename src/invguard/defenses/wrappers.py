"""Output defences: ``Defense.wrap(target) -> Target``.

Each defence is a frozen keyword-only config that changes what a target returns, for whole batches
at once, and never exposes gradients or logits. Rounding, top-k, reverse sigmoid and noise keep the
top-1 label of every input; label-only returns nothing else. Combine them with :class:`Compose`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from invguard.defenses.output import (
    gaussian_noise,
    label_only,
    reverse_sigmoid,
    round_scores,
    top_k,
)
from invguard.errors import InvalidParameterError, TargetError, check_float, check_int
from invguard.targets.base import Capability, Target

FloatArray = NDArray[np.float32]
Transform = Callable[[FloatArray], FloatArray]


@runtime_checkable
class OutputDefense(Protocol):
    """An output defence: ``wrap`` a target, or ``transform`` score arrays directly."""

    name: ClassVar[str]

    def transform(self, num_classes: int) -> Transform: ...

    def wrap(self, target: Target) -> Target: ...

    def describe(self) -> str: ...


class DefendedTarget:
    """A target whose scores pass through an output defence. Queries count on the inner target."""

    def __init__(self, inner: Target, defense: OutputDefense) -> None:
        if not ({Capability.PROBABILITIES, Capability.SCORES} & inner.capabilities):
            raise TargetError(
                f"defence '{defense.name}' needs a target that returns scores; this one offers "
                f"{', '.join(sorted(inner.capabilities))}"
            )
        self.inner = inner
        self.defense = defense
        self._transform = defense.transform(inner.num_classes)
        self._labels_only = _labels_only(defense)

    @property
    def capabilities(self) -> frozenset[Capability]:
        if self._labels_only:
            return frozenset({Capability.LABELS})
        return frozenset({Capability.SCORES, Capability.LABELS})

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inner.input_shape

    @property
    def queries(self) -> int:
        return self.inner.queries

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._transform(np.asarray(self.inner.predict(x), dtype=np.float32))


def _labels_only(defense: OutputDefense) -> bool:
    if isinstance(defense, LabelOnly):
        return True
    return isinstance(defense, Compose) and any(_labels_only(d) for d in defense.defenses)


class _Base:
    name: ClassVar[str]

    def wrap(self, target: Target) -> Target:
        return DefendedTarget(target, self)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class RoundScores(_Base):
    """Round scores to ``decimals`` decimals (Fredrikson et al. 2015)."""

    name: ClassVar[str] = "round"
    decimals: int

    def __post_init__(self) -> None:
        check_int("decimals", self.decimals, minimum=0)

    def transform(self, num_classes: int) -> Transform:
        return lambda p: round_scores(p, self.decimals)

    def describe(self) -> str:
        return f"scores rounded to {self.decimals} decimals"


@dataclass(frozen=True, kw_only=True)
class TopK(_Base):
    """Return only the ``k`` highest scores (the rest are 0)."""

    name: ClassVar[str] = "top_k"
    k: int

    def __post_init__(self) -> None:
        check_int("k", self.k, minimum=1)

    def transform(self, num_classes: int) -> Transform:
        if self.k > num_classes:
            raise InvalidParameterError(
                f"The 'k' parameter must be <= the number of classes ({num_classes}), got {self.k}"
            )
        return lambda p: top_k(p, self.k)

    def describe(self) -> str:
        return f"top-{self.k} scores"


@dataclass(frozen=True, kw_only=True)
class LabelOnly(_Base):
    """Return the label only (one-hot rows)."""

    name: ClassVar[str] = "label_only"

    def transform(self, num_classes: int) -> Transform:
        return label_only

    def describe(self) -> str:
        return "labels only"


@dataclass(frozen=True, kw_only=True)
class GaussianNoise(_Base):
    """Add N(0, sigma^2) noise to the scores (renormalised, labels kept); seeded per wrap."""

    name: ClassVar[str] = "noise"
    sigma: float
    seed: int = 0

    def __post_init__(self) -> None:
        check_float("sigma", self.sigma, minimum=0.0, min_inclusive=False)
        check_int("seed", self.seed, minimum=0)

    def transform(self, num_classes: int) -> Transform:
        rng = np.random.default_rng(self.seed)
        return lambda p: gaussian_noise(p, self.sigma, rng)

    def describe(self) -> str:
        return f"Gaussian noise (sigma {self.sigma}) on the scores"


@dataclass(frozen=True, kw_only=True)
class ReverseSigmoid(_Base):
    """The reverse sigmoid perturbation (Lee et al. 2019), labels kept."""

    name: ClassVar[str] = "reverse_sigmoid"
    beta: float = 1.0
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_float("beta", self.beta, minimum=0.0, min_inclusive=False)
        check_float("gamma", self.gamma, minimum=0.0, min_inclusive=False)

    def transform(self, num_classes: int) -> Transform:
        return lambda p: reverse_sigmoid(p, self.beta, self.gamma)

    def describe(self) -> str:
        return f"reverse sigmoid (beta {self.beta}, gamma {self.gamma})"


@dataclass(frozen=True)
class Compose(_Base):
    """Apply defences in order, e.g. ``Compose([TopK(k=3), RoundScores(decimals=2)])``."""

    name: ClassVar[str] = "compose"
    defenses: Sequence[OutputDefense] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.defenses:
            raise InvalidParameterError("The 'defenses' parameter must list at least one defence")

    def transform(self, num_classes: int) -> Transform:
        steps = [d.transform(num_classes) for d in self.defenses]

        def run(p: FloatArray) -> FloatArray:
            for step in steps:
                p = step(p)
            return p

        return run

    def describe(self) -> str:
        return ", then ".join(d.describe() for d in self.defenses)


OUTPUT_DEFENSES: dict[str, type[_Base]] = {
    "round": RoundScores,
    "top_k": TopK,
    "label_only": LabelOnly,
    "noise": GaussianNoise,
    "reverse_sigmoid": ReverseSigmoid,
}
