"""The InvGuard gateway: a prediction API in front of a model that enforces the assessment's controls.

``POST /v1/predict`` takes ``{"inputs": [...]}`` (a batch of inputs with values in [0, 1]) and
answers with the output policy's view of the model's scores (``{"predictions": [[...]]}``, or
``{"labels": [...]}`` for a label-only policy). ``GET /healthz`` answers ``{"status": "ok"}``;
``GET /metrics`` gives Prometheus metrics. This module is the Starlette app and the server
(:func:`create_gateway_app`, :func:`serve`, :func:`running_gateway`); the parts are

* :mod:`invguard.gateway.backends`: the model behind the gateway (:class:`Backend`,
  :func:`load_backend`), loaded from the configured model source;
* :mod:`invguard.gateway.policy`: the output policy (:func:`build_policy`);
* :mod:`invguard.gateway.service`: :class:`Gateway`, the request handling (authentication, rate
  limits, detection, responses and alerts) and its state;
* :mod:`invguard.gateway.parsing`: request bodies to batches, large ones in worker processes;
* :mod:`invguard.gateway.connections`: the header timeout and connection cap of the server
  (:func:`uvicorn_options`).

Keys are never logged: logs, metrics, alerts and the audit log name a key by its configured
``id``. Blocks, degradations and throttles survive a restart: they are rebuilt from the audit
log's alerts at start.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from invguard.errors import InvalidParameterError, MissingDependencyError
from invguard.gateway.backends import Backend, load_backend
from invguard.gateway.config import LoadedGatewayConfig, ServerConfig
from invguard.gateway.connections import guarded_h11
from invguard.gateway.model_server import (
    HEALTH_PATH,
    PREDICT_PATH,
    error_response,
    serve_in_thread,
)
from invguard.gateway.policy import OutputPolicy, build_policy
from invguard.gateway.service import Client, Gateway, body_limit

logger = logging.getLogger("invguard.gateway")

METRICS_PATH = "/metrics"

try:  # starlette is the optional 'serve' extra
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


def create_gateway_app(loaded: LoadedGatewayConfig, **kwargs: Any) -> Starlette:
    """The Starlette app of a :class:`Gateway` built from ``loaded`` (``kwargs`` go to it).

    ``app.state.gateway`` is the gateway; the app's lifespan closes it on shutdown (when the
    server runs the lifespan; otherwise call ``app.state.gateway.close()``).
    """
    if not _HAVE_STARLETTE:  # pragma: no cover
        raise MissingDependencyError("starlette", "serve")
    gateway = Gateway(loaded, **kwargs)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))
        return error_response(500, "internal error")  # pragma: no cover

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("internal error: %s", type(exc).__name__)
        return error_response(500, "internal error")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(gateway.close)

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        500: server_error,
    }
    app = Starlette(
        routes=[
            Route(PREDICT_PATH, gateway.predict, methods=["POST"]),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
            Route(METRICS_PATH, gateway.metrics_endpoint, methods=["GET"]),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


def uvicorn_options(server: ServerConfig) -> dict[str, Any]:
    """uvicorn's settings for the configured connection limits.

    uvicorn's own ``limit_concurrency`` is left off: it counts idle connections too, so idle
    connections beyond it would make it answer 503 to every client; the protocol of
    :func:`~invguard.gateway.connections.guarded_h11` caps connections by closing idle ones.
    """
    return {
        "http": guarded_h11(server.header_timeout, server.max_connections),
        "timeout_keep_alive": server.keep_alive_timeout,
        "h11_max_incomplete_event_size": server.max_header_bytes,
        "backlog": min(2048, server.max_connections),
    }


def describe_limits(server: ServerConfig, input_shape: tuple[int, ...]) -> str:
    """The request and connection limits in force, in words (for the log and ``--check``)."""
    s = server
    return (
        f"bodies up to {body_limit(s, input_shape)} bytes within {s.body_timeout:g} s "
        f"(above {s.inline_parse_bytes} parsed by {s.parse_workers} worker processes), "
        f"{s.key_concurrency} requests in progress per key, headers within "
        f"{s.header_timeout:g} s, at most {s.max_connections} connections"
    )


@contextlib.contextmanager
def running_gateway(loaded: LoadedGatewayConfig, **kwargs: Any) -> Iterator[tuple[str, Gateway]]:
    """Serve a gateway on a free loopback port in a thread, with the configured connection
    limits: yields ``(base_url, gateway)``; stops the server and closes the gateway on exit."""
    app = create_gateway_app(loaded, **kwargs)
    gateway: Gateway = app.state.gateway
    try:
        with serve_in_thread(app, options=uvicorn_options(loaded.config.server)) as base:
            yield base, gateway
    finally:
        gateway.close()


def limit_compute_threads(threads: int) -> None:
    """Use ``threads`` threads for torch and BLAS in this process: small batches on a busy
    machine run faster and more predictably on one thread per request than on a team."""
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        threadpool_limits(threads)


def serve(
    loaded: LoadedGatewayConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the gateway with uvicorn until SIGINT/SIGTERM (then it closes cleanly).

    The socket is bound first (``port`` 0 picks a free one) and ``on_ready(base_url)`` is called
    once the server accepts connections.
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("uvicorn", "serve") from exc
    server_cfg = loaded.config.server
    host = host if host is not None else server_cfg.host
    port = port if port is not None else server_cfg.port
    app = create_gateway_app(loaded)
    # The model, torch and every module are loaded: freeze them out of the garbage collector.
    # Detection keeps long-lived objects per key, so full collections do happen; unfrozen, each
    # one walks ~300,000 objects (200 ms measured, a p99 spike); frozen, well under 1 ms.
    gc.collect()
    gc.freeze()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        app.state.gateway.close()
        raise InvalidParameterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    config = uvicorn.Config(
        app,
        lifespan="on",
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=5,
        ws="none",
        **uvicorn_options(server_cfg),
    )
    gateway: Gateway = app.state.gateway
    gateway.parser.start()  # the parsing workers, before the first large body
    logger.info("limits: %s", describe_limits(server_cfg, gateway.backend.input_shape))
    server = uvicorn.Server(config)
    if on_ready is not None:

        def announce() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                on_ready(f"http://{shown}:{bound}")

        threading.Thread(target=announce, name="gateway-ready", daemon=True).start()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler that was
    # there before: with this one, a SIGTERM after a clean shutdown ends the command with 0
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: None) if in_main else None
    try:
        server.run(sockets=[sock])
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
        app.state.gateway.close()  # idempotent: the lifespan normally did it


__all__ = [
    "METRICS_PATH",
    "Backend",
    "Client",
    "Gateway",
    "OutputPolicy",
    "build_policy",
    "create_gateway_app",
    "describe_limits",
    "limit_compute_threads",
    "load_backend",
    "running_gateway",
    "serve",
    "uvicorn_options",
]
