"""Targets: adapters that let attacks query a model under assessment."""

from invguard.targets.base import (
    Capability,
    GradientTarget,
    QueryBudgetExceededError,
    QueryCounter,
    Target,
    check_batch,
    require,
)
from invguard.targets.pytorch import GRADIENT_QUANTITIES, GradientQuantity, TorchTarget

__all__ = [
    "GRADIENT_QUANTITIES",
    "Capability",
    "GradientQuantity",
    "GradientTarget",
    "QueryBudgetExceededError",
    "QueryCounter",
    "Target",
    "TorchTarget",
    "check_batch",
    "require",
]
