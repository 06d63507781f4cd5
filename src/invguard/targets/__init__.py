"""Targets: adapters that let attacks query a model under assessment."""

from invguard.targets.base import (
    FULL_PROBABILITIES,
    Capability,
    GradientTarget,
    OutputSpec,
    QueryBudgetExceededError,
    QueryCounter,
    Target,
    check_batch,
    require,
)
from invguard.targets.pytorch import GRADIENT_QUANTITIES, GradientQuantity, TorchTarget
from invguard.targets.restricted import RestrictedTarget

__all__ = [
    "FULL_PROBABILITIES",
    "GRADIENT_QUANTITIES",
    "Capability",
    "GradientQuantity",
    "GradientTarget",
    "OutputSpec",
    "QueryBudgetExceededError",
    "QueryCounter",
    "RestrictedTarget",
    "Target",
    "TorchTarget",
    "check_batch",
    "require",
]
