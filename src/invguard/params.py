"""Shared contract pieces of the attack configs (image and tabular): the ``rng`` parameter, a
config as JSON, and the final ``run``. A leaf: numpy and :mod:`invguard.errors` only."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from invguard.errors import InvalidParameterError


def as_generator(rng: np.random.Generator | int) -> tuple[np.random.Generator, int | None]:
    """Accept a Generator or an int seed (recorded in results); anything else is refused."""
    if isinstance(rng, np.random.Generator):
        return rng, None
    if isinstance(rng, int) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(rng), rng
    raise InvalidParameterError(
        f"The 'rng' parameter must be a numpy.random.Generator or an int >= 0, got {rng!r}"
    )


def config_dict(config: object) -> dict[str, Any]:
    """A frozen attack config as a JSON-ready dict."""
    assert dataclasses.is_dataclass(config)
    assert not isinstance(config, type)
    return dataclasses.asdict(config)


def refuse_run_override(cls: type, base: str, instead: str) -> None:
    """For a base's ``__init_subclass__``: its ``run`` is final (Foolbox-style bookkeeping)."""
    if "run" in cls.__dict__:
        raise TypeError(
            f"{cls.__name__} overrides {base}.run, which is final: implement {instead} instead"
        )


__all__ = ["as_generator", "config_dict", "refuse_run_override"]
