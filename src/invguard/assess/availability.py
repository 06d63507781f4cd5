"""Is a failed endpoint down (the system cannot be assessed now) or misconfigured (bad input)?

An endpoint that refuses connections, times out, or answers 429/5xx after its retries is
*unavailable*: the assessment reports the system as not assessed and the gate fails (exit 1). Any
other failure (401, 404, an answer of the wrong shape) is a configuration error (exit 2).
"""

from __future__ import annotations

from invguard.config_errors import ConfigError
from invguard.errors import InvGuardError
from invguard.targets.http import EndpointError


class EndpointUnavailableError(ConfigError):
    """An HTTP system's endpoint could not be reached: the system cannot be assessed now, though
    its configuration may well be right. The assessment reports it as incomplete."""


def endpoint_unavailable(exc: BaseException) -> bool:
    """Did ``exc`` come from an endpoint that is down (no answer, or 429/5xx after retries)?"""
    if isinstance(exc, EndpointUnavailableError):
        return True
    if not isinstance(exc, EndpointError):
        return False
    status = exc.status
    if exc.unreachable:
        return True
    return status is not None and (status == 429 or 500 <= status < 600)


def endpoint_failure(exc: InvGuardError, where: str) -> ConfigError:
    """The error for a failed endpoint query at ``where``: unavailable, or a configuration error."""
    if endpoint_unavailable(exc):
        return EndpointUnavailableError(f"{where}: {exc}")
    return ConfigError(f"{where}: {exc}")


__all__ = [
    "EndpointUnavailableError",
    "endpoint_failure",
    "endpoint_unavailable",
]
