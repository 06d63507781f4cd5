"""Targets: adapters that let attacks query a model under assessment.

``OnnxTarget`` lives in :mod:`invguard.targets.onnx` (it needs the ``onnx`` extra).
"""

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
from invguard.targets.http import EndpointError, HttpTarget
from invguard.targets.pytorch import (
    GRADIENT_QUANTITIES,
    GradientQuantity,
    Normalization,
    TorchTarget,
)
from invguard.targets.restricted import RestrictedTarget
from invguard.targets.sklearn import SklearnTarget, load_sklearn_model, save_sklearn_model

__all__ = [
    "FULL_PROBABILITIES",
    "GRADIENT_QUANTITIES",
    "Capability",
    "EndpointError",
    "GradientQuantity",
    "GradientTarget",
    "HttpTarget",
    "Normalization",
    "OutputSpec",
    "QueryBudgetExceededError",
    "QueryCounter",
    "RestrictedTarget",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "check_batch",
    "load_sklearn_model",
    "require",
    "save_sklearn_model",
]
