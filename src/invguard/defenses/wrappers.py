"""Output defences: ``Defense.wrap(target) -> Target``.

Each defence is a frozen keyword-only config that changes what a target returns, for whole batches
at once, and never exposes gradients or logits. Rounding, top-k, reverse sigmoid and noise keep the
top-1 label of every input; label-only returns nothing else. Combine them with :class:`Compose`.
The defences are the output steps of :mod:`invguard.targets.output`; ``wrap`` gives a
:class:`~invguard.targets.TargetView`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from invguard.targets.base import Target
from invguard.targets.output import (
    OUTPUT_STEPS,
    Compose,
    GaussianNoise,
    LabelOnly,
    OutputStep,
    ReverseSigmoid,
    RoundScores,
    TargetView,
    TopK,
    Transform,
)

OUTPUT_DEFENSES = OUTPUT_STEPS


@runtime_checkable
class OutputDefense(OutputStep, Protocol):
    """An output defence: ``wrap`` a target, or ``transform`` score arrays directly."""

    def wrap(self, target: Target) -> Target: ...


class DefendedTarget(TargetView):
    """A target whose scores pass through an output defence. Queries count on the inner target.

    The :class:`~invguard.targets.TargetView` of one defence, which it keeps as ``defense``.
    """

    def __init__(self, inner: Target, defense: OutputDefense) -> None:
        super().__init__(inner, output=defense)
        self.defense = defense


__all__ = [
    "OUTPUT_DEFENSES",
    "Compose",
    "DefendedTarget",
    "GaussianNoise",
    "LabelOnly",
    "OutputDefense",
    "ReverseSigmoid",
    "RoundScores",
    "TopK",
    "Transform",
]
