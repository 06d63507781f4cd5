"""Defences: output defences that wrap a target, and training-time defences that produce a model.

Output defences (``Defense.wrap(target) -> Target``): :class:`RoundScores`, :class:`TopK`,
:class:`LabelOnly`, :class:`GaussianNoise`, :class:`ReverseSigmoid`, and :class:`Compose`.
Training-time defences (``defense.train(dataset, arch, seed=...) -> DefendedModel``): :class:`DPSGD`,
:class:`LabelSmoothing`, :class:`MID`, :class:`BiDO`, :class:`TransferLearning`. ``arch`` is a
reference architecture's name or a :class:`UserArchitecture` (the user's factory), which DP-SGD and
label smoothing retrain.
:func:`evaluate_defenses` measures them all as leakage against accuracy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from invguard.defenses.selection import TradeOff, pareto_front, recommend
from invguard.defenses.training import (
    DPSGD,
    MID,
    TRAINING_DEFENSES,
    BiDO,
    DefendedModel,
    LabelSmoothing,
    TrainingDefense,
    TransferLearning,
    UserArchitecture,
)
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

if TYPE_CHECKING:
    from invguard.defenses.evaluation import DefenseEvaluation, evaluate_defenses

# The evaluation loads on first use, for speed only: it brings the attack, judge, metric and prior
# stacks (about 3 s of imports), which a plain output or training defence does not need.
_LAZY = dict.fromkeys(("DefenseEvaluation", "evaluate_defenses"), "invguard.defenses.evaluation")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'invguard.defenses' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DPSGD",
    "MID",
    "OUTPUT_DEFENSES",
    "TRAINING_DEFENSES",
    "BiDO",
    "Compose",
    "DefendedModel",
    "DefendedTarget",
    "DefenseEvaluation",
    "GaussianNoise",
    "LabelOnly",
    "LabelSmoothing",
    "OutputDefense",
    "ReverseSigmoid",
    "RoundScores",
    "TopK",
    "TradeOff",
    "TrainingDefense",
    "TransferLearning",
    "UserArchitecture",
    "evaluate_defenses",
    "pareto_front",
    "recommend",
]
