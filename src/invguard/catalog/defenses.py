"""The defence catalogue: every training-time and output defence by name, the defaults that
``invguard defend evaluate`` measures, and how a config entry becomes a defence object (one-line
``ValueError`` naming the parameter)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from invguard.defenses.training import TRAINING_DEFENSES, TrainingDefense
from invguard.defenses.wrappers import OUTPUT_DEFENSES, Compose, OutputDefense
from invguard.errors import InvalidParameterError


class OutputStepConfig(Protocol):
    """An output-defence config entry (``assess.config.OutputDefenseConfig``)."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def steps(self) -> Sequence[OutputStepConfig] | None: ...


# The defences `invguard defend evaluate` measures when no config lists any: the settings measured in
# benchmarks/eval_training_defenses.py, positive smoothing for comparison, and the output defences.
DEFAULT_TRAINING: tuple[dict[str, Any], ...] = (
    {"name": "label-smoothing", "params": {"alpha": -2.0}},
    {"name": "label-smoothing", "params": {"alpha": 0.1}},
    {"name": "dp-sgd", "params": {"epsilon": 8.0}},
    {"name": "mid", "params": {"beta": 0.001}},
    {"name": "bido", "params": {"lambda_x": 1.0, "lambda_y": 1.0}},
    {"name": "transfer-learning", "params": {"freeze": 1}},
)
DEFAULT_OUTPUT: tuple[dict[str, Any], ...] = (
    {"name": "round", "params": {"decimals": 1}},
    {"name": "top_k", "params": {"k": 1}},
    {"name": "noise", "params": {"sigma": 0.05}},
    {"name": "reverse_sigmoid", "params": {"beta": 0.8, "gamma": 0.2}},
    {"name": "label_only"},
)


def _build(cls: type[Any], kind: str, name: str, params: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "recipe"}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for {kind} defence {name!r} "
            f"(expected one of: {', '.join(sorted(fields)) or 'none'})"
        )
    try:
        return cls(**params)
    except InvalidParameterError as exc:
        raise ValueError(str(exc)) from exc
    except TypeError as exc:  # a required parameter is missing
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init
            and f.name not in params
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"{kind} defence {name!r} needs the parameter {missing[0]!r}") from exc
        raise ValueError(f"{kind} defence {name!r}: {exc}") from exc


def build_training_defense(name: str, params: dict[str, Any]) -> TrainingDefense:
    """The training-time defence of a config entry; ``ValueError`` (one line) when invalid."""
    if name not in TRAINING_DEFENSES:
        raise ValueError(
            f"unknown training defence {name!r} (expected one of: "
            f"{', '.join(sorted(TRAINING_DEFENSES))})"
        )
    out: TrainingDefense = _build(TRAINING_DEFENSES[name], "training", name, params)
    return out


def build_output_defense(
    name: str, params: dict[str, Any], steps: Sequence[OutputStepConfig] | None = None
) -> OutputDefense:
    """The output defence of a config entry (``compose`` chains ``steps``); ``ValueError`` if bad."""
    if name == "compose":
        if params:
            raise ValueError("output defence 'compose' takes 'steps', not 'params'")
        if not steps:
            raise ValueError("output defence 'compose' needs at least one entry in 'steps'")
        return Compose(
            defenses=tuple(build_output_defense(s.name, s.params, s.steps) for s in steps)
        )
    if steps is not None:
        raise ValueError(f"only 'compose' takes 'steps', not {name!r}")
    if name not in OUTPUT_DEFENSES:
        raise ValueError(
            f"unknown output defence {name!r} (expected one of: "
            f"{', '.join(sorted([*OUTPUT_DEFENSES, 'compose']))})"
        )
    out: OutputDefense = _build(OUTPUT_DEFENSES[name], "output", name, params)
    return out


__all__ = [
    "DEFAULT_OUTPUT",
    "DEFAULT_TRAINING",
    "OutputStepConfig",
    "build_output_defense",
    "build_training_defense",
]
