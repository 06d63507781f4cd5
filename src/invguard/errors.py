"""Typed error hierarchy.

Every error that a user can cause (bad input, bad configuration, a missing optional package) is an
:class:`InvGuardError`. The CLI turns these into a one-line message and exit code 2; the service
turns them into a 4xx response. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InvGuardError(Exception):
    """Base class of all errors that InvGuard raises on purpose."""


class InvalidParameterError(InvGuardError, ValueError):
    """A parameter has a value outside its documented range or type."""


class DataError(InvGuardError):
    """A data set is missing, unreadable or has the wrong shape."""


class ModelError(InvGuardError):
    """A model file is unsafe, unreadable, or does not fit the declared architecture."""


class TargetError(InvGuardError):
    """A target was asked for something it cannot do (e.g. gradients of a black-box target)."""


class MissingDependencyError(InvGuardError, ImportError):
    """An optional package is not installed; the message says how to install it."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package '{package}': "
            f"install it with  pip install 'invguard[{extra}]'"
        )
        self.package = package
        self.extra = extra


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Validate an integer parameter, scikit-learn style."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterError(
            f"The '{name}' parameter must be an int, got {type(value).__name__} {value!r}"
        )
    if minimum is not None and value < minimum:
        raise InvalidParameterError(
            f"The '{name}' parameter must be an int >= {minimum}, got {value}"
        )
    return value


def check_float(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """Validate a real-valued parameter, scikit-learn style."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a float, got {type(value).__name__} {value!r}"
        )
    v = float(value)
    if v != v:
        raise InvalidParameterError(f"The '{name}' parameter must be a float, got nan")
    lo_ok = minimum is None or (v >= minimum if min_inclusive else v > minimum)
    hi_ok = maximum is None or (v <= maximum if max_inclusive else v < maximum)
    if not (lo_ok and hi_ok):
        lo = "" if minimum is None else ("[" if min_inclusive else "(") + f"{minimum}"
        hi = "" if maximum is None else f"{maximum}" + ("]" if max_inclusive else ")")
        if minimum is not None and maximum is not None:
            rng = f"in the range {lo}, {hi}"
        elif minimum is not None:
            rng = f"{'>=' if min_inclusive else '>'} {minimum}"
        else:
            rng = f"{'<=' if max_inclusive else '<'} {maximum}"
        raise InvalidParameterError(f"The '{name}' parameter must be a float {rng}, got {v}")
    return v


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Validate a string parameter against a fixed set of choices."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidParameterError(
            f"The '{name}' parameter must be one of {', '.join(repr(c) for c in choices)}, "
            f"got {value!r}"
        )
    return value
