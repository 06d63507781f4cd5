"""Defences: output defences that wrap a target, and training-time defences that produce a model.

Output defences (``Defense.wrap(target) -> Target``): :class:`RoundScores`, :class:`TopK`,
:class:`LabelOnly`, :class:`GaussianNoise`, :class:`ReverseSigmoid`, and :class:`Compose`.
"""

from invguard.defenses.wrappers import (
    OUTPUT_DEFENSES,
    Compose,
    DefendedTarget,
    GaussianNoise,
    LabelOnly,
    OutputDefense,
    ReverseSigmoid,
    RoundScores,
    TopK,
)

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
]
