"""Defences: output defences that wrap a target, and training-time defences that produce a model.

Output defences (``Defense.wrap(target) -> Target``): :class:`RoundScores`, :class:`TopK`,
:class:`LabelOnly`, :class:`GaussianNoise`, :class:`ReverseSigmoid`, and :class:`Compose`.
Training-time defences (``defense.train(dataset, arch, seed=...) -> DefendedModel``): :class:`DPSGD`,
:class:`LabelSmoothing`, :class:`MID`, :class:`BiDO`, :class:`TransferLearning`.
:func:`evaluate_defenses` measures them all as leakage against accuracy.
"""

from invguard.defenses.evaluation import DefenseEvaluation, evaluate_defenses
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
    "evaluate_defenses",
    "pareto_front",
    "recommend",
]
