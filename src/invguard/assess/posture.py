"""Posture probes: what a deployed prediction endpoint really gives an attacker, measured.

Each probe sends a few requests with random inputs in [0, 1] and records what came back:

* ``authentication``: is a request without the configured credentials refused (401/403)?
* ``output_detail``: are full probability vectors returned (non-zero scores per row, row sums)?
  Full vectors are what confidence-based inversion needs (Fredrikson et al., CCS 2015).
* ``output_precision``: how many decimals do the scores carry? Rounding is the countermeasure
  Fredrikson et al. evaluated.
* ``rate_limiting``: does a bounded burst of requests see a 429 (RFC 6585)?
* ``transport_security``: is the URL https?

Every observation's evidence counts the requests and queries (inputs) that its probe sent (the
two output checks share one request, counted under ``output_detail``).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, check_float, check_int
from invguard.targets.http import (
    LABELS_POINTER,
    SCORES_POINTER,
    EndpointError,
    PointerError,
    check_request_template,
    check_url,
    encode_inputs,
    header_secrets,
    parse_json_pointer,
    parse_retry_after,
    redact_url,
    resolve_json_pointer,
    scrub,
    url_secrets,
)

CHECKS: tuple[str, ...] = (
    "authentication",
    "output_detail",
    "output_precision",
    "rate_limiting",
    "transport_security",
)
FULL_PRECISION_DECIMALS = 6  # more decimals than this in probabilities: not rounded
_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True, kw_only=True)
class PostureObservation:
    """One measured posture check; ``evidence`` is JSON-ready."""

    check: str
    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ProbeError(Exception):
    """Internal: the endpoint could not be reached; becomes an EndpointError."""


def _decimals(value: float) -> int:
    """Decimals in the shortest repr of ``value`` (``0.07`` -> 2, ``1e-05`` -> 5, ``1.0`` -> 0)."""
    text = repr(float(value)).lower()
    mantissa, _, exp = text.partition("e")
    frac = mantissa.partition(".")[2].rstrip("0")
    return max(0, len(frac) - (int(exp) if exp else 0))


def _significant_digits(value: float) -> int:
    """Significant digits in the shortest repr of ``value`` (``0.07`` -> 1, ``0.1234`` -> 4)."""
    mantissa = repr(abs(float(value))).lower().partition("e")[0]
    digits = mantissa.replace(".", "").lstrip("0").rstrip("0")
    return max(1, len(digits))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Prober:
    def __init__(
        self,
        url: httpx.URL,
        *,
        headers: Mapping[str, str],
        template: Mapping[str, Any],
        input_shape: tuple[int, ...],
        rng: np.random.Generator,
        client: httpx.Client,
    ) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self.headers = dict(headers)
        self.secrets = header_secrets(self.headers) + url_secrets(url)
        self.template = template
        self.input_shape = input_shape
        self.rng = rng
        self.client = client
        self.requests = 0
        self.queries = 0

    def send(self, n: int, *, credentials: bool = True) -> httpx.Response:
        x = self.rng.random((n, *self.input_shape), dtype=np.float32)
        body = encode_inputs(self.template, x)
        hdrs = {"Content-Type": "application/json", "Accept": "application/json"}
        if credentials:
            hdrs.update(self.headers)
        self.requests += 1
        self.queries += n
        try:
            return self.client.post(self.url, content=body, headers=hdrs)
        except httpx.TimeoutException as exc:
            raise _ProbeError(f"timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise _ProbeError(
                f"request failed: {type(exc).__name__}: {scrub(str(exc), self.secrets, 120)}"
            ) from None


def _probe_authentication(p: _Prober) -> PostureObservation:
    before = (p.requests, p.queries)
    resp = p.send(1, credentials=False)
    status = resp.status_code
    evidence: dict[str, Any] = {
        "credentials_configured": bool(p.headers),
        "header_names": sorted(p.headers),
        "status_without_credentials": status,
        "requests": p.requests - before[0],
        "queries": p.queries - before[1],
    }
    if status in (401, 403):
        return PostureObservation(
            check="authentication",
            passed=True,
            summary=f"a request without credentials is refused (HTTP {status})",
            evidence=evidence,
            recommendation="keep requiring credentials; rotate keys and scope them per client",
        )
    if 200 <= status < 300:
        return PostureObservation(
            check="authentication",
            passed=False,
            summary=f"a request without credentials is answered (HTTP {status}): anyone who "
            "can reach the endpoint can query the model",
            evidence=evidence,
            recommendation="require an API key or token (e.g. X-API-Key or Authorization: "
            "Bearer) on every prediction request",
        )
    evidence["conclusive"] = False
    return PostureObservation(
        check="authentication",
        passed=False,
        summary=f"inconclusive: a request without credentials got HTTP {status}, neither an "
        "answer nor 401/403",
        evidence=evidence,
        recommendation="answer unauthenticated requests with 401 or 403 and re-run the probe",
    )


def _output_request(
    p: _Prober, samples: int, sleep: Callable[[float], None], max_wait: float
) -> httpx.Response:
    resp = p.send(samples)
    if resp.status_code == 429:  # the endpoint's own rate limit: wait once, as told
        wait = parse_retry_after(resp.headers.get("retry-after"))
        if wait is not None and wait <= max_wait:
            sleep(wait)
            resp = p.send(samples)
    return resp


def _inconclusive_outputs(reason: str, evidence: dict[str, Any]) -> list[PostureObservation]:
    evidence = {**evidence, "conclusive": False}
    return [
        PostureObservation(
            check=check,
            passed=False,
            summary=f"inconclusive: {reason}",
            evidence=evidence,
            recommendation="make the endpoint answer the probe (credentials, request template, "
            "response mapping) and re-run it",
        )
        for check in ("output_detail", "output_precision")
    ]


class _InconclusiveError(Exception):
    """The output probe could not read scores or labels; the message says why."""


def _scores_or_labels(
    resp: httpx.Response, pointers: tuple[str, ...], samples: int, base: dict[str, Any]
) -> Any:
    """The value at the first of ``pointers`` that the JSON response has (recorded in ``base``)."""
    if not 200 <= resp.status_code < 300:
        raise _InconclusiveError(
            f"the endpoint answered HTTP {resp.status_code} to {samples} random inputs"
        )
    try:
        doc = resp.json()
    except (ValueError, UnicodeDecodeError):
        ctype = resp.headers.get("content-type", "none")
        raise _InconclusiveError(f"the response is not JSON (content-type '{ctype}')") from None
    for pointer in pointers:
        try:
            value = resolve_json_pointer(doc, parse_json_pointer(pointer))
        except PointerError:
            continue
        base["response_mapping"] = pointer
        return value
    raise _InconclusiveError(f"the response has none of {', '.join(pointers)}")


def _labels_only(ev: dict[str, Any]) -> list[PostureObservation]:
    return [
        PostureObservation(
            check="output_detail",
            passed=True,
            summary="only labels are returned, no scores",
            evidence=ev,
            recommendation="labels only is the strongest output policy; keep it",
        ),
        PostureObservation(
            check="output_precision",
            passed=True,
            summary="labels only: no scores to measure",
            evidence={**ev, "precision": "labels only"},
            recommendation="none needed",
        ),
    ]


def _detail_observation(
    scores: NDArray[np.float64], base: dict[str, Any], num_classes: int
) -> PostureObservation:
    """How many classes are scored per input (full vectors feed score-based inversion)."""
    nonzero = (scores != 0).sum(axis=1)
    sums = scores.sum(axis=1)
    kmin, kmax = int(nonzero.min()), int(nonzero.max())
    sums_to_one = bool((np.abs(sums - 1.0) <= _SUM_TOLERANCE).all())
    if kmax == num_classes:
        form = "full probability vectors" if sums_to_one else "full score vectors"
    elif kmin == kmax:
        form = f"top-{kmax} scores"
    else:
        form = f"partial vectors ({kmin}-{kmax} of {num_classes} classes non-zero)"
    ev = {
        **base,
        "form": form,
        "rows": len(scores),
        "classes": num_classes,
        "nonzero_per_row": {"min": kmin, "max": kmax, "mean": float(nonzero.mean())},
        "row_sum": {"min": float(sums.min()), "max": float(sums.max())},
        "rows_sum_to_one": sums_to_one,
    }
    if kmax == num_classes:
        return PostureObservation(
            check="output_detail",
            passed=False,
            summary=f"{form} are returned: every input gets a score for all {num_classes} classes",
            evidence=ev,
            recommendation="return only the label, or the top-1/top-k scores, unless clients "
            "need the full vector",
        )
    return PostureObservation(
        check="output_detail",
        passed=True,
        summary=f"{form} are returned: at most {kmax} of {num_classes} classes are scored per input",
        evidence=ev,
        recommendation="keep truncating; labels only leaks least",
    )


def _precision_observation(
    scores: NDArray[np.float64], detail_ev: dict[str, Any]
) -> PostureObservation:
    """How many decimals the returned scores carry (rounding starves gradient estimates)."""
    values = scores[scores != 0]
    decimals = max((_decimals(v) for v in values.tolist()), default=0)
    significant = max((_significant_digits(v) for v in values.tolist()), default=0)
    full_precision = decimals >= FULL_PRECISION_DECIMALS
    ev = {
        **detail_ev,
        "max_decimals": decimals,
        "max_significant_digits": significant,
        "values_checked": len(values),
        "precision": "full float precision" if full_precision else decimals,
    }
    if full_precision:
        return PostureObservation(
            check="output_precision",
            passed=False,
            summary=f"scores carry full float precision (up to {significant} significant digits)",
            evidence=ev,
            recommendation="round returned scores to 2 decimals or fewer (Fredrikson et al. "
            "2015), or return labels only",
        )
    return PostureObservation(
        check="output_precision",
        passed=True,
        summary=f"scores are rounded to {decimals} decimals",
        evidence=ev,
        recommendation="none needed"
        if decimals <= 2
        else "consider rounding to 2 decimals or fewer",
    )


def _probe_outputs(
    p: _Prober,
    *,
    pointers: tuple[str, ...],
    num_classes: int,
    samples: int,
    sleep: Callable[[float], None],
    max_wait: float,
) -> list[PostureObservation]:
    """Output detail and precision, measured on one request of ``samples`` random inputs."""
    before = (p.requests, p.queries)
    resp = _output_request(p, samples, sleep, max_wait)
    base: dict[str, Any] = {"status": resp.status_code}

    def counted(ev: dict[str, Any]) -> dict[str, Any]:
        return {**ev, "requests": p.requests - before[0], "queries": p.queries - before[1]}

    try:
        value = _scores_or_labels(resp, pointers, samples, base)
        try:
            arr = np.asarray(value)
        except ValueError:
            arr = np.asarray([], dtype=object)
        if arr.ndim == 1 and arr.dtype.kind in "iu" and len(arr) == samples:
            return _labels_only(counted({**base, "form": "labels only", "rows": len(arr)}))
        if arr.ndim != 2 or arr.dtype.kind not in "iuf" or arr.shape != (samples, num_classes):
            raise _InconclusiveError(
                f"'{base['response_mapping']}' is not a ({samples}, {num_classes}) array of "
                f"scores or {samples} labels (shape {arr.shape})"
            )
        scores = arr.astype(np.float64)
        if not np.isfinite(scores).all():
            raise _InconclusiveError("the scores contain NaN or infinite values")
    except _InconclusiveError as exc:
        return _inconclusive_outputs(str(exc), counted(base))
    detail = _detail_observation(scores, base, num_classes)
    detail = replace(detail, evidence=counted(detail.evidence))
    return [detail, _precision_observation(scores, detail.evidence)]


def _probe_rate_limiting(p: _Prober, burst: int) -> PostureObservation:
    before = (p.requests, p.queries)
    statuses: dict[str, int] = {}
    first_429: int | None = None
    retry_after: str | None = None
    other: int | None = None
    start = time.perf_counter()
    for i in range(burst):
        resp = p.send(1)
        code = resp.status_code
        statuses[str(code)] = statuses.get(str(code), 0) + 1
        if code == 429:
            first_429 = i + 1
            retry_after = resp.headers.get("retry-after")
            break
        if not 200 <= code < 300:
            other = code
            break
    seconds = time.perf_counter() - start
    evidence: dict[str, Any] = {
        "burst_limit": burst,
        "statuses": statuses,
        "seconds": round(seconds, 4),
        "first_429_at": first_429,
        "retry_after": retry_after,
        "requests": p.requests - before[0],
        "queries": p.queries - before[1],
    }
    sent = p.requests - before[0]
    if first_429 is not None:
        after = f", Retry-After {retry_after}" if retry_after else ", without Retry-After"
        return PostureObservation(
            check="rate_limiting",
            passed=True,
            summary=f"rate limited: request {first_429} of a burst got HTTP 429{after}",
            evidence=evidence,
            recommendation="keep the limit; size it to legitimate use, per client",
        )
    if other is not None:
        evidence["conclusive"] = False
        return PostureObservation(
            check="rate_limiting",
            passed=False,
            summary=f"inconclusive: request {sent} of the burst got HTTP {other}",
            evidence=evidence,
            recommendation="make the endpoint answer the probe and re-run it",
        )
    return PostureObservation(
        check="rate_limiting",
        passed=False,
        summary=f"no rate limit seen: {sent} requests in {seconds:.2f} s were all answered",
        evidence=evidence,
        recommendation="limit requests per client (token bucket, 429 with Retry-After): "
        "inversion attacks need thousands of queries",
    )


def _probe_transport(url: httpx.URL) -> PostureObservation:
    loopback = _is_loopback(url.host)
    evidence: dict[str, Any] = {
        "scheme": url.scheme,
        "host_is_loopback": loopback,
        "requests": 0,
        "queries": 0,
    }
    if url.scheme == "https":
        return PostureObservation(
            check="transport_security",
            passed=True,
            summary="the endpoint uses TLS (https)",
            evidence=evidence,
            recommendation="none needed",
        )
    where = " (a loopback address: acceptable only for local testing)" if loopback else ""
    return PostureObservation(
        check="transport_security",
        passed=False,
        summary=f"the endpoint is plain http{where}: inputs, scores and credentials cross the "
        "network unencrypted",
        evidence=evidence,
        recommendation="serve the endpoint over https only",
    )


def probe_endpoint(
    url: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    headers: Mapping[str, str] | None = None,
    request_template: Mapping[str, Any] | None = None,
    response_mapping: str | None = None,
    burst: int = 40,
    samples: int = 8,
    rng: np.random.Generator | int = 0,
    timeout: float = 10.0,
    checks: Collection[str] = CHECKS,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = 5.0,
) -> list[PostureObservation]:
    """Measure the posture of a JSON prediction endpoint; one observation per check, in order.

    ``headers`` are the credentials (and other headers) a legitimate client sends; they never
    appear in observations. ``response_mapping`` is a JSON pointer to the scores or labels (by
    default ``/predictions``, then ``/labels``). The probes send at most
    ``1 + 2 + burst`` requests and ``1 + 2 * samples + burst`` inputs, drawn from ``rng``.
    An endpoint that cannot be reached at all raises :class:`EndpointError`.
    """
    u = check_url(url)
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise InvalidParameterError(
            f"The 'input_shape' parameter must be a tuple of ints >= 1, got {input_shape!r}"
        )
    check_int("num_classes", num_classes, minimum=2)
    check_int("burst", burst, minimum=1)
    check_int("samples", samples, minimum=1)
    check_float("timeout", timeout, minimum=0.0, min_inclusive=False)
    check_float("max_wait", max_wait, minimum=0.0)
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or isinstance(checks, str):
        raise InvalidParameterError(
            f"The 'checks' parameter must be a collection of {', '.join(CHECKS)}, got {checks!r}"
        )
    pointers = (response_mapping,) if response_mapping else (SCORES_POINTER, LABELS_POINTER)
    for ptr in pointers:
        parse_json_pointer(ptr)
    if isinstance(rng, np.random.Generator):
        gen = rng
    else:
        gen = np.random.default_rng(check_int("rng", rng, minimum=0))
    client = httpx.Client(
        transport=transport if transport is not None else httpx.HTTPTransport(),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
    )
    prober = _Prober(
        u,
        headers=dict(headers or {}),
        template=check_request_template(request_template),
        input_shape=shape,
        rng=gen,
        client=client,
    )
    found: dict[str, PostureObservation] = {}
    try:
        if "authentication" in checks:
            found["authentication"] = _probe_authentication(prober)
        if "output_detail" in checks or "output_precision" in checks:
            for obs in _probe_outputs(
                prober,
                pointers=pointers,
                num_classes=num_classes,
                samples=samples,
                sleep=sleep,
                max_wait=max_wait,
            ):
                if obs.check == "output_precision" and "output_detail" in checks:
                    # measured on output_detail's request: count it once, there
                    shared = {"requests": 0, "queries": 0, "shares_request_with": "output_detail"}
                    obs = replace(obs, evidence={**obs.evidence, **shared})
                found[obs.check] = obs
        if "rate_limiting" in checks:
            found["rate_limiting"] = _probe_rate_limiting(prober, burst)
        if "transport_security" in checks:
            found["transport_security"] = _probe_transport(u)
    except _ProbeError as exc:
        raise EndpointError(
            prober.endpoint, str(exc), queries_spent=prober.queries, unreachable=True
        ) from None
    finally:
        client.close()
    return [found[c] for c in CHECKS if c in checks and c in found]
