"""Targets: adapters that let attacks query a model under assessment.

Every adapter is a :class:`BaseTarget` (one ``predict``: check the batch, charge the query, score,
restrict the output). :mod:`invguard.targets.output` holds the output restrictions (functions,
steps, :class:`OutputPolicy`) and :class:`TargetView`, the one wrapper for restricted, defended
and budgeted views. ``OnnxTarget`` lives in :mod:`invguard.targets.onnx` (it needs the ``onnx``
extra). This package imports nothing above it (no defences, attacks or assessment code).
"""

from invguard.targets.adapter import BaseTarget
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
from invguard.targets.output import OutputPolicy, OutputStep, TargetView, target_view
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
    "BaseTarget",
    "Capability",
    "EndpointError",
    "GradientQuantity",
    "GradientTarget",
    "HttpTarget",
    "Normalization",
    "OutputPolicy",
    "OutputSpec",
    "OutputStep",
    "QueryBudgetExceededError",
    "QueryCounter",
    "RestrictedTarget",
    "SklearnTarget",
    "Target",
    "TargetView",
    "TorchTarget",
    "check_batch",
    "load_sklearn_model",
    "require",
    "save_sklearn_model",
    "target_view",
]
