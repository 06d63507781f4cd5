"""The gateway's output policy: configured output steps as one batched transform of the scores.

Each step is one of InvGuard's output defences (:mod:`invguard.defenses.wrappers`, built on the
pure functions of :mod:`invguard.defenses.output`), looked up by the step's name.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.defenses.wrappers import (
    Compose,
    GaussianNoise,
    LabelOnly,
    OutputDefense,
    ReverseSigmoid,
    RoundScores,
    TopK,
)
from invguard.gateway.config import GatewayConfigError, OutputStep

FloatArray = NDArray[np.float32]

DEFENSES: dict[str, Callable[..., OutputDefense]] = {
    "round": RoundScores,
    "top_k": TopK,
    "label_only": LabelOnly,
    "noise": GaussianNoise,
    "reverse_sigmoid": ReverseSigmoid,
}
"""The output defence of each step name (the step's other fields are its parameters)."""

KEEPS_DECIMALS = frozenset({"top_k", "label_only"})
"""Steps after which rounded scores stay rounded (noise and reverse sigmoid un-round them)."""


@dataclass(frozen=True)
class OutputPolicy:
    """An output policy: the output defences in order, as one batched transform."""

    transform: Callable[[FloatArray], FloatArray] | None
    labels_only: bool
    decimals: int | None
    description: str

    def render(self, probs: FloatArray, *, labels: bool) -> dict[str, Any]:
        """The response body: ``labels`` for a label-only format, else ``predictions``."""
        if labels:
            return {"labels": probs.argmax(axis=1).tolist()}
        out = self.transform(probs) if self.transform is not None else probs
        shaped = np.asarray(out, dtype=np.float64)
        if self.decimals is not None:  # exact short decimals in the JSON, e.g. 0.07
            shaped = np.round(shaped, self.decimals)
        return {"predictions": shaped.tolist()}


def step_defense(step: OutputStep, num_classes: int, where: str) -> OutputDefense:
    """The output defence of one configured step (``where`` names it in errors)."""
    params = step.model_dump(exclude={"type"})
    if step.type == "top_k" and params["k"] > num_classes:
        raise GatewayConfigError(
            f"{where}.k: must be at most the number of classes ({num_classes}), got {params['k']}"
        )
    if step.type == "noise" and params["seed"] is None:  # a secret seed per start
        params["seed"] = secrets.randbelow(2**31)
    return DEFENSES[step.type](**params)


def build_policy(steps: Sequence[OutputStep], num_classes: int, where: str) -> OutputPolicy:
    """Turn configured steps into an :class:`OutputPolicy` using InvGuard's output defences."""
    defenses = [step_defense(s, num_classes, f"{where}[{i}]") for i, s in enumerate(steps)]
    if not defenses:
        return OutputPolicy(None, False, None, "full probabilities")
    decimals: int | None = None
    for step, defense in zip(steps, defenses, strict=True):
        if isinstance(defense, RoundScores):
            decimals = defense.decimals
        elif step.type not in KEEPS_DECIMALS:
            decimals = None
    composed = Compose(defenses)
    return OutputPolicy(
        composed.transform(num_classes),
        any(isinstance(d, LabelOnly) for d in defenses),
        decimals,
        composed.describe(),
    )


__all__ = ["DEFENSES", "KEEPS_DECIMALS", "OutputPolicy", "build_policy", "step_defense"]
