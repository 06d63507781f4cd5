"""Black-box adapter for a model behind an HTTP JSON prediction endpoint.

Each request carries up to ``max_batch`` inputs in a JSON body built from a template; the scores
(or labels) are read from the response with a JSON pointer (RFC 6901). Queries are charged before
anything is sent, so a hard ``query_budget`` is never exceeded; 429 and 5xx answers are retried
with exponential backoff, honouring ``Retry-After`` (RFC 9110, section 10.2.3). Credentials in
``headers`` never appear in errors or reprs.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from types import TracebackType
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, TargetError, check_float, check_int
from invguard.targets.adapter import BaseTarget
from invguard.targets.base import FULL_PROBABILITIES, OutputSpec

INPUTS_PLACEHOLDER = "$inputs"
DEFAULT_REQUEST_TEMPLATE: Mapping[str, Any] = {"inputs": INPUTS_PLACEHOLDER}
SCORES_POINTER = "/predictions"
LABELS_POINTER = "/labels"
_REDACTED = "***"
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
_SCORE_TOLERANCE = 1e-3  # probabilities may exceed 1 by float error, not more


class EndpointError(TargetError):
    """A prediction endpoint failed or answered something unusable.

    The message is one line, ``endpoint <url>: <problem>``, with credentials removed.
    ``queries_spent`` is the target's query count after the failure (inputs sent stay counted);
    ``status`` is the last HTTP status, when there was a response; ``unreachable`` is true when
    no answer came at all (connection refused, DNS, TLS, timeout).
    """

    def __init__(
        self,
        endpoint: str,
        problem: str,
        *,
        queries_spent: int,
        status: int | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(f"endpoint {endpoint}: {problem}")
        self.endpoint = endpoint
        self.problem = problem
        self.queries_spent = queries_spent
        self.status = status
        self.unreachable = unreachable


# --- helpers shared with the posture probes -------------------------------------------------


def redact_url(url: str | httpx.URL) -> str:
    """``url`` without user info, with query values replaced by ``***``."""
    u = httpx.URL(url)
    host = u.host
    if ":" in host:
        host = f"[{host}]"
    out = f"{u.scheme}://{host}" + (f":{u.port}" if u.port is not None else "") + u.path
    if u.query:
        keys = [k for k, _ in u.params.multi_items()]
        out += "?" + "&".join(f"{k}={_REDACTED}" for k in keys)
    return out


def url_secrets(url: str | httpx.URL) -> list[str]:
    """The parts of ``url`` that must never be shown: password, user name, query values."""
    u = httpx.URL(url)
    found = [u.password or "", u.username or ""]
    found += [v for _, v in u.params.multi_items()]
    return [s for s in found if s]


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """Every header value, and the credential part of ``<scheme> <credential>`` values."""
    found: list[str] = []
    for value in headers.values():
        found.append(value)
        parts = value.split(None, 1)
        if len(parts) == 2:
            found.append(parts[1])
    return [s for s in found if s]


def scrub(text: str, secrets: list[str], limit: int = 200) -> str:
    """``text`` on one line, at most ``limit`` characters, with every secret replaced."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, _REDACTED)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_url(url: object) -> httpx.URL:
    if not isinstance(url, str | httpx.URL):
        raise InvalidParameterError(f"The 'url' parameter must be a str, got {type(url).__name__}")
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidParameterError(f"The 'url' parameter is not a valid URL: {exc}") from exc
    if u.scheme not in ("http", "https") or not u.host:
        raise InvalidParameterError(
            f"The 'url' parameter must be an http:// or https:// URL with a host, got "
            f"'{redact_url(u) if u.host else u.scheme + ':...'}'"
        )
    return u


def parse_json_pointer(pointer: str, name: str = "response_mapping") -> tuple[str, ...]:
    """Split an RFC 6901 JSON pointer into its unescaped reference tokens."""
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a JSON pointer (RFC 6901) such as '/predictions', "
            f"got {pointer!r}"
        )
    if pointer == "":
        return ()
    tokens = pointer[1:].split("/")
    for tok in tokens:
        bad = tok.replace("~0", "").replace("~1", "")
        if "~" in bad:
            raise InvalidParameterError(
                f"The '{name}' parameter has an invalid escape in {pointer!r}: '~' must be "
                "followed by 0 or 1"
            )
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


class PointerError(LookupError):
    """A JSON pointer does not resolve in a document."""


def resolve_json_pointer(doc: Any, tokens: tuple[str, ...]) -> Any:
    """The value that ``tokens`` (from :func:`parse_json_pointer`) point to in ``doc``."""
    cur = doc
    path = ""
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                keys = ", ".join(sorted(map(str, cur))[:8]) or "none"
                where = f"'{path}'" if path else "the top level"
                raise PointerError(f"no field '{tok}' at {where} (keys there: {keys})")
            cur = cur[tok]
        elif isinstance(cur, list):
            if not tok.isdigit() or (tok != "0" and tok.startswith("0")) or int(tok) >= len(cur):
                raise PointerError(f"no element '{tok}' in the array at '{path or '/'}'")
            cur = cur[int(tok)]
        else:
            raise PointerError(f"'{path}' is a {type(cur).__name__}, not an object or array")
        path += "/" + tok.replace("~", "~0").replace("/", "~1")
    return cur


def check_request_template(template: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Validate a request template: a JSON object containing the string ``"$inputs"``."""
    if template is None:
        return DEFAULT_REQUEST_TEMPLATE
    if not isinstance(template, Mapping):
        raise InvalidParameterError(
            f"The 'request_template' parameter must be a JSON object (a dict), got "
            f"{type(template).__name__}"
        )
    try:
        text = json.dumps(template, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"The 'request_template' parameter must be JSON-serialisable: {exc}"
        ) from exc
    if json.dumps(INPUTS_PLACEHOLDER) not in text:
        raise InvalidParameterError(
            f"The 'request_template' parameter must contain the string '{INPUTS_PLACEHOLDER}' "
            'where the inputs go, e.g. {"inputs": "$inputs"}'
        )
    return template


def fill_template(template: Any, inputs: Any) -> Any:
    """A copy of ``template`` with every ``"$inputs"`` string replaced by ``inputs``."""
    if isinstance(template, str):
        return inputs if template == INPUTS_PLACEHOLDER else template
    if isinstance(template, Mapping):
        return {k: fill_template(v, inputs) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [fill_template(v, inputs) for v in template]
    return template


def encode_inputs(template: Mapping[str, Any], batch: NDArray[np.float32]) -> bytes:
    """The JSON request body for ``batch`` (nested lists of floats)."""
    body = fill_template(template, batch.tolist())
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _status_text(resp: httpx.Response) -> str:
    phrase = resp.reason_phrase
    return f"HTTP {resp.status_code}" + (f" {phrase}" if phrase else "")


def _server_message(resp: httpx.Response, secrets: list[str]) -> str:
    """The server's one-line explanation from a JSON error body, if any."""
    try:
        doc = resp.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            val = doc.get(key)
            if isinstance(val, str) and val:
                return f": server says '{scrub(val, secrets, 160)}'"
            if isinstance(val, dict) and isinstance(val.get("message"), str):
                return f": server says '{scrub(val['message'], secrets, 160)}'"
    return ""


class _ChunkError(Exception):
    """Internal: one request failed; becomes an :class:`EndpointError` with the final counts."""

    def __init__(
        self, problem: str, status: int | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status
        self.unreachable = unreachable


class HttpTarget(BaseTarget):
    """A model behind an HTTP JSON prediction API, queried as a black-box target.

    ``output`` declares what the endpoint returns (full probabilities, top-k, rounded, labels
    only); ``response_mapping`` points to the ``(n, classes)`` scores (default ``/predictions``)
    or, for label-only endpoints, to the ``(n,)`` labels (default ``/labels``). Inputs are sent
    ``max_batch`` per request, ``concurrency`` requests at a time over one shared client.
    ``predict`` charges all its inputs before sending: a call that would exceed
    ``query_budget`` raises :class:`QueryBudgetExceededError` and sends nothing. On failure, inputs
    that were sent stay counted and the others are refunded.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); the default is a plain
    ``httpx.HTTPTransport`` (environment proxies are not used). ``sleep`` is called for backoff.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        output: OutputSpec = FULL_PROBABILITIES,
        headers: Mapping[str, str] | None = None,
        request_template: Mapping[str, Any] | None = None,
        response_mapping: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        max_batch: int = 64,
        concurrency: int = 1,
        query_budget: int | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = check_url(url)
        self.endpoint = redact_url(self._url)
        check_int("num_classes", num_classes, minimum=2)
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise InvalidParameterError(
                f"The 'input_shape' parameter must be a tuple of ints >= 1, got {input_shape!r}"
            )
        if not isinstance(output, OutputSpec):
            raise InvalidParameterError(
                f"The 'output' parameter must be an OutputSpec, got {type(output).__name__}"
            )
        self._declare(num_classes, output)
        hdrs = dict(headers or {})
        for k, v in hdrs.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidParameterError(
                    f"The 'headers' parameter must map str to str, got a {type(v).__name__} "
                    f"value for {k!r}"
                )
        self._header_names = tuple(hdrs)
        self._secrets = header_secrets(hdrs) + url_secrets(self._url)
        self._template = check_request_template(request_template)
        if response_mapping is None:
            response_mapping = SCORES_POINTER if output.scores else LABELS_POINTER
        self.response_mapping = response_mapping
        self._pointer = parse_json_pointer(response_mapping)
        self.timeout = check_float("timeout", timeout, minimum=0.0, min_inclusive=False)
        self.retries = check_int("retries", retries, minimum=0)
        self.backoff = check_float("backoff", backoff, minimum=0.0)
        self.max_retry_wait = check_float("max_retry_wait", max_retry_wait, minimum=0.0)
        self.max_batch = check_int("max_batch", max_batch, minimum=1)
        self.concurrency = check_int("concurrency", concurrency, minimum=1)
        super().__init__(input_shape=shape, query_budget=query_budget)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._requests = 0
        self._client = httpx.Client(
            transport=transport if transport is not None else httpx.HTTPTransport(),
            headers={"Content-Type": "application/json", "Accept": "application/json", **hdrs},
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
        )

    # --- the Target contract: BaseTarget.predict, charged here, restricted by the endpoint --

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent, retries included."""
        return self._requests

    def _charge(self, n: int) -> None:
        """Charge the whole batch before anything is sent (nothing is sent when this raises)."""
        if self._closed:
            raise TargetError(f"endpoint {self.endpoint}: the target is closed")
        with self._lock:
            self._counter.charge(n)

    def _restrict(self, scores: NDArray[np.float32]) -> NDArray[np.float32]:
        """The endpoint's answers as they are: ``output`` declares what it already returns."""
        return scores

    def _scores(self, arr: NDArray[np.float32]) -> NDArray[np.float32]:
        """Scores ``(n, num_classes)`` from the endpoint (one-hot rows for labels only); on
        failure, inputs that were sent stay counted and the others are refunded."""
        n = len(arr)
        if n == 0:
            return np.zeros((0, self._num_classes), dtype=np.float32)
        chunks = [arr[i : i + self.max_batch] for i in range(0, n, self.max_batch)]
        sent = [0]
        stop = threading.Event()

        def work(chunk: NDArray[np.float32]) -> NDArray[np.float32] | None:
            if stop.is_set():
                return None
            with self._lock:
                sent[0] += len(chunk)
            try:
                return self._query_chunk(chunk)
            except BaseException:
                stop.set()
                raise

        results: list[NDArray[np.float32] | None] = []
        error: BaseException | None = None
        if self.concurrency == 1 or len(chunks) == 1:
            for chunk in chunks:
                try:
                    results.append(work(chunk))
                except BaseException as exc:
                    error = exc
                    break
        else:
            futures = [self._executor().submit(work, c) for c in chunks]
            for fut in futures:
                failed = fut.exception()
                if failed is not None and error is None:
                    error = failed
                results.append(None if failed is not None else fut.result())
        if error is not None:
            with self._lock:
                self._counter.count -= n - sent[0]  # refund inputs that were never sent
            if isinstance(error, _ChunkError):
                raise EndpointError(
                    self.endpoint,
                    error.problem,
                    queries_spent=self.queries,
                    status=error.status,
                    unreachable=error.unreachable,
                ) from error.__cause__
            raise error
        return np.concatenate([r for r in results if r is not None])

    # --- one request -----------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="invguard-http"
                )
            return self._pool

    def _scrub(self, text: str, limit: int = 200) -> str:
        return scrub(text, self._secrets, limit)

    def _send(self, body: bytes) -> httpx.Response:
        """POST ``body``; retry 429 and 5xx with backoff. Raises :class:`_ChunkError`."""
        attempt = 0
        while True:
            with self._lock:
                self._requests += 1
            try:
                resp = self._client.post(self._url, content=body)
            except httpx.TimeoutException as exc:
                raise _ChunkError(
                    f"timed out after {self.timeout:g} s ({type(exc).__name__})", unreachable=True
                ) from None
            except httpx.ConnectError as exc:
                text = self._scrub(str(exc), 120)
                what = "connection refused" if "refused" in text.lower() else "cannot connect"
                raise _ChunkError(f"{what} ({text})", unreachable=True) from None
            except httpx.HTTPError as exc:
                raise _ChunkError(
                    f"request failed: {type(exc).__name__}: {self._scrub(str(exc), 120)}",
                    unreachable=True,
                ) from None
            status = resp.status_code
            if status not in _RETRY_STATUSES:
                return resp
            if attempt >= self.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise _ChunkError(
                    f"{_status_text(resp)}{tries}{_server_message(resp, self._secrets)}", status
                )
            wait = parse_retry_after(resp.headers.get("retry-after"))
            if wait is None:
                wait = self.backoff * 2.0**attempt
            if wait > self.max_retry_wait:
                raise _ChunkError(
                    f"{_status_text(resp)} with Retry-After {wait:g} s, more than "
                    f"max_retry_wait={self.max_retry_wait:g} s",
                    status,
                )
            self._sleep(wait)
            attempt += 1

    def _query_chunk(self, chunk: NDArray[np.float32]) -> NDArray[np.float32]:
        resp = self._send(encode_inputs(self._template, chunk))
        status = resp.status_code
        if not 200 <= status < 300:
            hint = ""
            if status in (401, 403):
                hint = ": check the credentials in 'headers'"
            elif 300 <= status < 400:
                hint = ": redirects are not followed, use the final URL"
            raise _ChunkError(
                f"{_status_text(resp)}{hint}{_server_message(resp, self._secrets)}", status
            )
        ctype = resp.headers.get("content-type", "")
        try:
            doc = json.loads(resp.content)
        except (ValueError, UnicodeDecodeError) as exc:
            if "json" not in ctype.lower():
                start = self._scrub(resp.content[:40].decode("utf-8", "replace"), 40)
                raise _ChunkError(
                    f"response is not JSON (content-type '{ctype or 'none'}', body starts "
                    f"{start!r})",
                    status,
                ) from None
            raise _ChunkError(
                f"response is malformed JSON: {self._scrub(str(exc), 120)}", status
            ) from None
        try:
            value = resolve_json_pointer(doc, self._pointer)
        except PointerError as exc:
            raise _ChunkError(
                f"response has no '{self.response_mapping}': {self._scrub(str(exc), 160)}", status
            ) from None
        try:
            return self._to_scores(value, len(chunk))
        except _ChunkError as exc:
            exc.status = status
            raise

    def _to_scores(self, value: Any, n: int) -> NDArray[np.float32]:
        field = f"response field '{self.response_mapping}'"
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged nesting
            arr = np.asarray([], dtype=object)
        if not self.output.scores and arr.ndim == 1:
            if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
                raise _ChunkError(f"{field} must be a list of integer labels, got {_kind(value)}")
            if len(arr) != n:
                raise _ChunkError(f"{field} has {len(arr)} labels for {n} inputs")
            bad = arr[(arr < 0) | (arr >= self._num_classes)]
            if len(bad):
                raise _ChunkError(
                    f"label {int(bad[0])} in {field} is out of range for {self._num_classes} "
                    f"classes (0 to {self._num_classes - 1})"
                )
            out = np.zeros((n, self._num_classes), dtype=np.float32)
            out[np.arange(n), arr.astype(np.int64)] = 1.0
            return out
        if arr.ndim != 2 or arr.dtype.kind not in "iuf":
            want = "labels or " if not self.output.scores else ""
            raise _ChunkError(
                f"{field} must be {want}an (inputs, classes) array of numbers, got {_kind(value)}"
            )
        if arr.shape[0] != n:
            raise _ChunkError(f"{field} has {arr.shape[0]} rows for {n} inputs")
        if arr.shape[1] != self._num_classes:
            raise _ChunkError(
                f"{field} has {arr.shape[1]} class scores per input, expected {self._num_classes}"
            )
        scores = arr.astype(np.float64)
        if not np.isfinite(scores).all():
            raise _ChunkError(f"{field} contains NaN or infinite scores")
        if scores.min() < 0:
            raise _ChunkError(
                f"{field} contains negative scores (min {scores.min():.4g}): probabilities are "
                "expected, not logits"
            )
        if scores.max() > 1 + _SCORE_TOLERANCE:
            raise _ChunkError(
                f"{field} contains scores above 1 (max {scores.max():.4g}): probabilities are "
                "expected, not logits"
            )
        out32: NDArray[np.float32] = scores.astype(np.float32)
        if not self.output.scores:  # a label-only endpoint that answers with (one-hot) rows
            onehot = np.zeros_like(out32)
            onehot[np.arange(n), out32.argmax(axis=1)] = 1.0
            return onehot
        return out32

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client and the worker threads."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> HttpTarget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ", ".join(self._header_names) or "none"
        return (
            f"HttpTarget('{self.endpoint}', num_classes={self._num_classes}, "
            f"input_shape={self._input_shape}, output='{self.output.describe()}', "
            f"headers=[{names}] (values redacted), queries={self.queries})"
        )


def _kind(value: Any) -> str:
    """A short description of a JSON value's type and shape, never its content."""
    if isinstance(value, list):
        try:
            arr = np.asarray(value)
        except ValueError:
            return "a ragged list"
        kinds = {"i": "integers", "u": "integers", "f": "numbers", "b": "booleans", "U": "strings"}
        return f"a list of shape {arr.shape} of {kinds.get(arr.dtype.kind, 'mixed values')}"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"
