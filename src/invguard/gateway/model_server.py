"""A small, real prediction server for a model: for tests, benchmarks and the gateway.

``POST /v1/predict`` takes ``{"inputs": [...]}`` (a batch of images with values in [0, 1]) and
answers ``{"predictions": [[...]]}`` shaped by an :class:`~invguard.targets.OutputSpec`, or
``{"labels": [...]}`` for labels only; the model is called once per request. ``GET /healthz``
answers ``{"status": "ok"}``. Optional API keys (``X-API-Key`` or ``Authorization: Bearer``) are
kept only as SHA-256 digests and compared in constant time; an optional token bucket limits
requests per key (per client address without keys) and answers 429 with ``Retry-After``.
Every error is a JSON ``{"error": "<one line>"}``. ``serve_in_thread`` runs an app with uvicorn
on a free loopback port. References: https://www.starlette.io/, https://www.uvicorn.org/,
RFC 6585 (429), RFC 6750 (Bearer tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.defenses.output import apply_output_spec
from invguard.errors import InvalidParameterError, MissingDependencyError, check_float, check_int
from invguard.gateway.parsing import InputError, InputSpec, parse_inputs
from invguard.targets.base import OutputSpec

PredictProba = Callable[[NDArray[np.float32]], Any]
PREDICT_PATH = "/v1/predict"
HEALTH_PATH = "/healthz"
DEFAULT_MAX_BODY_BYTES = 16 * 2**20

try:  # starlette and uvicorn are the optional 'serve' extra
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_STARLETTE = False
else:
    _HAVE_STARLETTE = True


def _require_starlette() -> None:
    if not _HAVE_STARLETTE:  # pragma: no cover
        raise MissingDependencyError("starlette", "serve")


@dataclass
class ServerStats:
    """What a model app has seen; ``served_inputs`` is the number of inputs the model answered."""

    requests: int = 0
    served_requests: int = 0
    served_inputs: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _refuse(self, status: int) -> None:
        with self._lock:
            self.refused[status] = self.refused.get(status, 0) + 1

    def _serve(self, n: int) -> None:
        with self._lock:
            self.served_requests += 1
            self.served_inputs += n

    def _receive(self) -> None:
        with self._lock:
            self.requests += 1


class TokenBucketLimiter:
    """One token bucket per client: ``rate`` tokens per second, at most ``burst`` stored.

    ``take(client, cost)`` spends ``cost`` tokens (one request, or one per input) and returns 0,
    or returns the seconds until they are available (a cost above ``burst`` never is: check it
    first). At most ``max_clients`` buckets are kept; full (idle) buckets are dropped first.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate = check_float("rate", rate, minimum=0.0, min_inclusive=False)
        self.burst = check_int("burst", burst, minimum=1)
        self.max_clients = check_int("max_clients", max_clients, minimum=1)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time)
        self._lock = threading.Lock()

    def take(self, client: str, cost: float = 1.0) -> float:
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[client] = (tokens - cost, now)
                self._prune(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (cost - tokens) / self.rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= self.max_clients:
            return
        full = [
            c
            for c, (t, last) in self._buckets.items()
            if t + (now - last) * self.rate >= self.burst
        ]
        for c in full:
            del self._buckets[c]
        while len(self._buckets) > self.max_clients:  # drop the least recently seen
            oldest = min(self._buckets, key=lambda c: self._buckets[c][1])
            del self._buckets[oldest]


class Refusal(Exception):  # noqa: N818 - control flow inside an app, never escapes it
    """A request refused with ``status`` and a one-line ``message`` (answered as JSON)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def spend_tokens(bucket: TokenBucketLimiter, key_id: str, cost: int, unit: str) -> None:
    """Take ``cost`` tokens from ``bucket`` for the key, or refuse with 429 and ``Retry-After``."""
    wait_s = bucket.take(key_id, cost)
    if wait_s > 0:
        retry_after = str(max(1, math.ceil(wait_s)))
        raise Refusal(
            429,
            f"rate limit exceeded: at most {bucket.rate:g} {unit} per second "
            f"(burst {bucket.burst}); retry after {retry_after} s",
            {"Retry-After": retry_after},
        )


def refusal_of(exc: InputError) -> Refusal:
    """The Refusal of a body refused by :mod:`invguard.gateway.parsing`."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Refusal(exc.status, exc.message, headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error answer ``{"error": message}`` with ``status`` and ``headers``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


class ModelApp:
    """The request handling behind :func:`create_model_app` (no global state); the gateway reuses
    its authentication and request reading and validation."""

    def __init__(
        self,
        predict_proba: PredictProba,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        output: OutputSpec,
        api_keys: Collection[str] | None,
        rate_limit: tuple[float, int] | None,
        max_batch: int,
        max_body_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        if not callable(predict_proba):
            raise InvalidParameterError(
                "The 'predict_proba' parameter must be a callable, got "
                f"{type(predict_proba).__name__}"
            )
        self.predict_proba = predict_proba
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise InvalidParameterError(
                f"The 'input_shape' parameter must be a tuple of ints >= 1, got {input_shape!r}"
            )
        self.input_shape = shape
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        if not isinstance(output, OutputSpec):
            raise InvalidParameterError(
                f"The 'output' parameter must be an OutputSpec, got {type(output).__name__}"
            )
        if output.top_k is not None and output.top_k > num_classes:
            raise InvalidParameterError(
                f"The 'top_k' parameter must be <= the number of classes ({num_classes}), "
                f"got {output.top_k}"
            )
        self.output = output
        self.max_batch = check_int("max_batch", max_batch, minimum=1)
        self.max_body_bytes = check_int("max_body_bytes", max_body_bytes, minimum=64)
        self.key_digests: tuple[bytes, ...] | None = None
        if api_keys is not None:
            if isinstance(api_keys, str):
                raise InvalidParameterError(
                    "The 'api_keys' parameter must be a collection of keys, got a single string"
                )
            keys = list(api_keys)
            if not keys or not all(isinstance(k, str) and k for k in keys):
                raise InvalidParameterError(
                    "The 'api_keys' parameter must be None or a non-empty collection of "
                    "non-empty strings"
                )
            self.key_digests = tuple(_key_digest(k) for k in keys)
        self.limiter: TokenBucketLimiter | None = None
        if rate_limit is not None:
            if not isinstance(rate_limit, tuple) or len(rate_limit) != 2:
                raise InvalidParameterError(
                    "The 'rate_limit' parameter must be None or a tuple (tokens per second, "
                    f"burst), got {rate_limit!r}"
                )
            self.limiter = TokenBucketLimiter(rate_limit[0], rate_limit[1], clock=clock)
        self.input_spec = InputSpec(self.input_shape, self.max_batch)
        self.stats = ServerStats()

    def authenticate(self, request: Request) -> str | None:
        """The client's identity for rate limiting: a key digest, or None without keys."""
        if self.key_digests is None:
            return None
        key = request.headers.get("x-api-key")
        if key is None:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                key = token.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="invguard"'}
        if not key:
            raise Refusal(
                401,
                "missing API key: send it in the X-API-Key header or as Authorization: Bearer",
                challenge,
            )
        digest = _key_digest(key)
        matched: bytes | None = None
        for known in self.key_digests:  # compare with every key, in constant time each
            if hmac.compare_digest(known, digest):
                matched = known
        if matched is None:
            raise Refusal(401, "invalid API key", challenge)
        return "key:" + matched.hex()[:16]

    async def read_body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        too_large = f"request body is larger than the limit of {limit} bytes"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, too_large + f" (Content-Length {declared})")
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refusal(413, too_large)
            parts.append(chunk)
        return b"".join(parts)

    def parse_inputs(self, body: bytes) -> NDArray[np.float32]:
        """The batch in ``body`` (:func:`~invguard.gateway.parsing.parse_inputs`), or a Refusal."""
        try:
            return parse_inputs(body, self.input_spec)
        except InputError as exc:
            raise refusal_of(exc) from None

    def render(self, probs: NDArray[np.float32]) -> dict[str, Any]:
        if not self.output.scores:
            return {"labels": probs.argmax(axis=1).tolist()}
        shaped = apply_output_spec(probs, self.output).astype(np.float64)
        if self.output.decimals is not None:  # exact short decimals in the JSON, e.g. 0.07
            shaped = np.round(shaped, self.output.decimals)
        return {"predictions": shaped.tolist()}

    async def predict(self, request: Request) -> Response:
        self.stats._receive()
        try:
            client = self.authenticate(request)
            if self.limiter is not None:
                who = client or "addr:" + (request.client.host if request.client else "unknown")
                spend_tokens(self.limiter, who, 1, "requests")
            x = self.parse_inputs(await self.read_body(request))
        except Refusal as refusal:
            self.stats._refuse(refusal.status)
            return error_response(refusal.status, refusal.message, refusal.headers)
        try:
            raw = await run_in_threadpool(self.predict_proba, x)
            probs = np.asarray(raw, dtype=np.float32)
        except Exception:  # the model's own failure: never leak its traceback to clients
            self.stats._refuse(500)
            return error_response(500, "the model failed on this batch")
        if probs.shape != (len(x), self.num_classes) or not np.isfinite(probs).all():
            self.stats._refuse(500)
            return error_response(
                500,
                f"the model returned scores of shape {_shape(probs.shape)} (or non-finite "
                f"values) for {len(x)} inputs and {self.num_classes} classes",
            )
        self.stats._serve(len(x))
        return JSONResponse(self.render(probs))


def create_model_app(
    predict_proba: PredictProba,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    output: OutputSpec = OutputSpec(),  # noqa: B008 - frozen, immutable
    api_keys: Collection[str] | None = None,
    rate_limit: tuple[float, int] | None = None,
    max_batch: int = 256,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """A Starlette app serving ``predict_proba`` (``(n, *input_shape) -> (n, num_classes)``).

    ``rate_limit=(rate, burst)`` allows ``rate`` requests per second per client with bursts of
    ``burst``; ``clock`` drives the buckets (tests pass a fake one). ``app.state.stats`` is the
    :class:`ServerStats` of the app.
    """
    _require_starlette()
    handler = ModelApp(
        predict_proba,
        input_shape=input_shape,
        num_classes=num_classes,
        output=output,
        api_keys=api_keys,
        rate_limit=rate_limit,
        max_batch=max_batch,
        max_body_bytes=max_body_bytes,
        clock=clock,
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))
        return error_response(500, "internal error")  # pragma: no cover

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal error")

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        500: server_error,
    }
    app = Starlette(
        routes=[
            Route(PREDICT_PATH, handler.predict, methods=["POST"]),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
        ],
        exception_handlers=handlers,
    )
    app.state.stats = handler.stats
    app.state.model_app = handler
    return app


def server_stats(app: Starlette) -> ServerStats:
    """The :class:`ServerStats` of an app made by :func:`create_model_app`."""
    stats = getattr(app.state, "stats", None)
    if not isinstance(stats, ServerStats):
        raise InvalidParameterError("The 'app' parameter must come from create_model_app")
    return stats


@contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    startup_timeout: float = 10.0,
    options: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yield its base URL, e.g. ``http://127.0.0.1:PORT``.

    The socket is bound before the thread starts (``port=0`` picks a free port); the context
    waits until the server accepts connections and, on exit, shuts it down and joins the thread.
    Logging configuration is left alone (no ``dictConfig``). ``options`` are more arguments of
    ``uvicorn.Config`` (limits, the HTTP protocol).
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("uvicorn", "serve") from exc
    check_int("port", port, minimum=0)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (with proto 0
    # it does not, and Nagle's algorithm with delayed ACKs costs ~40 ms per request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidParameterError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound = sock.getsockname()[1]
    settings: dict[str, Any] = {
        "log_config": None,
        "log_level": None,
        "lifespan": "off",
        "ws": "none",
        "http": "h11",
        "loop": "asyncio",
        "timeout_graceful_shutdown": 5,
        **(options or {}),
    }
    config = uvicorn.Config(app, **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{bound}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            raise RuntimeError(f"the model server on {host}:{bound} did not start")
        time.sleep(0.01)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
