"""The gateway's request handling, state and resources: :class:`Gateway` (no global state).

A request is authenticated (API keys, known only by SHA-256 digest; 401), checked against the
key's block (403), its request bucket and its requests in progress (429 with ``Retry-After``),
and its body is read and validated: Content-Type 415, size 413 (before reading it when it
declares its length), time 408, JSON 400, shape and values 422 (:mod:`invguard.gateway.parsing`;
large bodies in worker processes, off the event loop). The key's query bucket is then charged
one token per input (429). Every answer, refusals included, is counted in the metrics by status
(499 for a client that closed its connection before its body was complete).
The model then answers; the :class:`~invguard.gateway.detectors.DetectionEngine` scores the batch
against the key's history using the model's full probabilities; a flagged detector triggers its
configured response (log, alert, degrade the key's outputs, throttle it, or block it for
``duration_seconds``); every alert is committed to the audit log *before* the response is sent
(503 if that fails), and posted to the webhook in the background. Blocks, degradations and
throttles survive a restart: they are rebuilt from the audit log's alerts at start.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import numpy as np
from numpy.typing import NDArray

from invguard.audit.errors import AuditError
from invguard.config_errors import ConfigError
from invguard.errors import InvalidParameterError, InvGuardError
from invguard.gateway.alerts import ACTOR, AuditWriter, Record, WebhookWorker
from invguard.gateway.backends import Backend, load_backend
from invguard.gateway.config import ACTIONS, GatewayConfigError, LoadedGatewayConfig, ServerConfig
from invguard.gateway.detectors import DetectionEngine, EngineSettings, Verdict
from invguard.gateway.metrics import GatewayMetrics
from invguard.gateway.model_server import (
    ModelApp,
    Refusal,
    TokenBucketLimiter,
    error_response,
    refusal_of,
    spend_tokens,
)
from invguard.gateway.parsing import InputError, ParsePool
from invguard.gateway.policy import OutputPolicy, build_policy
from invguard.models.sources import expand_headers
from invguard.targets.base import OutputSpec

try:  # starlette is the optional 'serve' extra
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
except ImportError:  # pragma: no cover - exercised only without the extra
    pass

logger = logging.getLogger("invguard.gateway")

FloatArray = NDArray[np.float32]

RESPONSE_FIELDS = {
    "block": "blocked_until",
    "degrade": "degraded_until",
    "throttle": "throttled_until",
}
"""The :class:`Client` field each timed response sets."""


BODY_SLACK = 64 * 2**10
"""Bytes of a body allowed beyond ``max_bytes_per_value`` per value of a full batch."""
JSON_TYPES = ("application/json",)


def body_limit(server: ServerConfig, input_shape: tuple[int, ...]) -> int:
    """The largest request body accepted: ``max_body_bytes``, or ``max_bytes_per_value`` bytes
    per value of a full batch plus 64 KiB if that is less."""
    values = math.prod(input_shape) * server.max_batch
    return min(server.max_body_bytes, values * server.max_bytes_per_value + BODY_SLACK)


@dataclass
class Client:
    """A configured API key at run time (never its secret; ``id`` names it). ``limiter`` counts
    queries (inputs), ``request_limiter`` requests; ``in_flight`` its requests in progress."""

    id: str
    policy: OutputPolicy
    limiter: TokenBucketLimiter | None
    detect: bool
    blocked_until: float = 0.0
    degraded_until: float = 0.0
    throttled_until: float = 0.0
    last_alert: dict[str, tuple[float, int]] = field(default_factory=dict)
    request_limiter: TokenBucketLimiter | None = None
    in_flight: int = 0


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(v: float) -> float | None:
    return None if not math.isfinite(v) else round(v, 6)


def _blocked(client: Client, now: float) -> Refusal:
    wait = str(max(1, math.ceil(client.blocked_until - now)))
    return Refusal(
        403,
        f"API key '{client.id}' is blocked until {_utc(client.blocked_until)} after a "
        "suspected model-inversion query pattern; contact the API's owner",
        {"Retry-After": wait},
    )


class Gateway:
    """The gateway's request handling, state and resources (no global state).

    ``backend`` replaces the configured model (tests, benchmarks); ``clock`` is the wall clock
    of responses and their ``until`` times, ``monotonic`` the clock of the token buckets;
    ``webhook_transport`` replaces the webhook's network. Call :meth:`close` when done.
    """

    def __init__(
        self,
        loaded: LoadedGatewayConfig,
        *,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        webhook_transport: Any = None,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self._clock = clock
        self._monotonic = monotonic
        self._closed = False
        self.backend = backend if backend is not None else load_backend(loaded)
        self.inline_max_inputs = self.config.server.inline_max_inputs
        self.io = self._build_io()
        server = self.config.server
        self.parser = ParsePool(
            self.io.input_spec, workers=server.parse_workers, queue=server.parse_queue
        )
        self.base_policy, self.degraded_policy = self._build_policies()
        throttle = self.config.detection.responses.throttle
        self.throttle = self._bucket(throttle.rate, throttle.burst)
        self.throttle_requests = self._bucket(*throttle.request_limit)
        self.clients = self._build_clients()
        self.engine, self.actions = self._build_engine()
        self.metrics = GatewayMetrics(
            self.engine.names if self.engine else (), model=self.backend.description
        )
        self._install_gauges()
        self.audit = self._open_audit()
        self.webhook = self._open_webhook(webhook_transport)
        self._start()

    # -- construction -----------------------------------------------------------------------

    def _build_io(self) -> ModelApp:
        """Request reading and validation are the model server's (limits, messages, 4xx)."""
        server = self.config.server
        io = ModelApp(
            self.backend.predict,
            input_shape=self.backend.input_shape,
            num_classes=self.backend.num_classes,
            output=OutputSpec(),
            api_keys=None,
            rate_limit=None,
            max_batch=server.max_batch,
            max_body_bytes=body_limit(server, self.backend.input_shape),
            clock=self._monotonic,
        )
        io.key_digests = tuple(bytes.fromhex(k.sha256) for k in self.config.keys)
        return io

    def _build_policies(self) -> tuple[OutputPolicy, OutputPolicy]:
        """The default policy and the policy of degraded keys."""
        classes, where = self.backend.num_classes, self.loaded.where
        degraded = self.config.detection.responses.degraded_output
        return (
            build_policy(self.config.output, classes, where("output")),
            build_policy(degraded, classes, where("detection.responses.degraded_output")),
        )

    def _bucket(self, rate: float, burst: int) -> TokenBucketLimiter:
        """A limiter with one token bucket per key."""
        return TokenBucketLimiter(
            rate, burst, clock=self._monotonic, max_clients=len(self.config.keys)
        )

    def _build_clients(self) -> dict[str, Client]:
        """The keys' run-time state, by the identity model_server's authenticate returns."""
        cfg = self.config
        clients: dict[str, Client] = {}
        limiters: dict[tuple[str, float, int], TokenBucketLimiter] = {}  # one per limit
        for i, k in enumerate(cfg.keys):
            limit = None if k.unlimited else (k.rate_limit or cfg.rate_limit)
            policy = self.base_policy
            if k.output is not None:
                where = self.loaded.where(f"keys[{i}].output")
                policy = build_policy(k.output, self.backend.num_classes, where)
            prefix = "key:" + k.sha256[:16]
            if prefix in clients:
                raise GatewayConfigError(
                    self.loaded.where(
                        f"keys[{i}].sha256: shares its first 64 bits with another key"
                    )
                )
            queries = requests = None
            if limit is not None:
                requests = limiters.setdefault(
                    ("requests", *limit.request_limit), self._bucket(*limit.request_limit)
                )
                queries = limiters.setdefault(
                    ("queries", limit.rate, limit.burst), self._bucket(limit.rate, limit.burst)
                )
            clients[prefix] = Client(
                k.id, policy, queries, k.detect and cfg.detection.enabled, request_limiter=requests
            )
        return clients

    def _build_engine(self) -> tuple[DetectionEngine | None, dict[str, str]]:
        """The detection engine (None when detection is off) and each detector's action."""
        det = self.config.detection
        if not det.enabled:
            return None, {}
        d = det.detectors

        def params(section: Any) -> dict[str, Any] | None:
            return section.model_dump(exclude={"enabled", "action"}) if section.enabled else None

        settings = EngineSettings(
            input_shape=self.backend.input_shape,
            num_classes=self.backend.num_classes,
            history=det.history,
            max_clients=det.max_clients,
            projection_dim=det.projection_dim,
            seed=det.seed,
            knn=params(d.knn),
            blacklight=params(d.blacklight),
            inversion=params(d.inversion),
            cross_key=params(d.cross_key),
        )
        engine = DetectionEngine(settings)
        return engine, {name: getattr(d, name).action for name in engine.names}

    def _open_audit(self) -> AuditWriter:
        try:
            return AuditWriter(self.loaded.resolve(self.config.alerts.audit_log))
        except AuditError as exc:
            raise GatewayConfigError(self.loaded.where(f"alerts.audit_log: {exc}")) from None

    def _open_webhook(self, transport: Any) -> WebhookWorker | None:
        """The webhook worker (None without a webhook); the audit log is closed on failure."""
        try:
            return self._webhook(transport)
        except BaseException:
            self.audit.close()
            raise

    def _webhook(self, transport: Any) -> WebhookWorker | None:
        hook = self.config.alerts.webhook
        if hook is None:
            return None
        where = self.loaded.where("alerts.webhook")
        secret = None
        if hook.secret_env is not None:
            secret = os.environ.get(hook.secret_env)
            if not secret:
                raise GatewayConfigError(
                    f"{where}.secret_env: environment variable {hook.secret_env} is not set"
                )
        try:
            headers = expand_headers(hook.headers, where)
        except ConfigError as exc:
            raise GatewayConfigError(str(exc)) from exc
        return WebhookWorker(
            hook.url,
            headers=headers,
            secret=secret,
            timeout=hook.timeout,
            retries=hook.retries,
            backoff=hook.backoff,
            queue_size=hook.queue_size,
            on_outcome=lambda outcome: self.metrics.webhook.inc(outcome),
            transport=transport,
        )

    def _start(self) -> None:
        """Restore running responses, record the start in the audit log, log the setup."""
        cfg = self.config
        restored = self._restore()
        detectors = {
            name: {"threshold": getattr(cfg.detection.detectors, name).threshold, "action": action}
            for name, action in self.actions.items()
        }
        self.audit.append(
            ACTOR,
            "gateway.start",
            "gateway",
            {
                "config_sha256": self.loaded.digest(),
                "model": self.backend.description,
                "keys": [k.id for k in cfg.keys],
                "output": self.base_policy.description,
                "detectors": detectors,
                "restored_responses": restored,
                "pid": os.getpid(),
            },
        )
        logger.info(
            "gateway ready: %s, %d keys, output %s, detectors %s",
            self.backend.description,
            len(cfg.keys),
            self.base_policy.description,
            ", ".join(f"{n} -> {a}" for n, a in self.actions.items()) or "off",
        )

    # -- state ------------------------------------------------------------------------------

    def _install_gauges(self) -> None:
        def count(attr: str) -> Callable[[], float]:
            return lambda: float(
                sum(getattr(c, attr) > self._clock() for c in self.clients.values())
            )

        self.metrics.gauge("blocked_clients", "API keys blocked now.", count("blocked_until"))
        self.metrics.gauge(
            "degraded_clients", "API keys whose outputs are degraded now.", count("degraded_until")
        )
        self.metrics.gauge("throttled_clients", "API keys throttled now.", count("throttled_until"))
        engine = self.engine
        self.metrics.gauge(
            "tracked_clients",
            "API keys whose query history the detectors keep.",
            lambda: float(engine.tracked_clients() if engine else 0),
        )

    def client(self, key_id: str) -> Client:
        """The run-time state of the key with configured ``id`` ``key_id``."""
        for c in self.clients.values():
            if c.id == key_id:
                return c
        raise InvalidParameterError(f"no API key with id {key_id!r}")

    def _restore(self) -> int:
        """Re-apply blocks, degradations and throttles still running, from the audit log; an
        alert's end is capped at its time plus the current ``duration_seconds``."""
        duration = self.config.detection.responses.duration_seconds
        now = self._clock()
        since = datetime.fromtimestamp(now - duration, UTC)
        entries = self.audit.call(lambda log: log.entries(action="gateway.alert", since=since))
        by_id = {c.id: c for c in self.clients.values()}
        restored = 0
        for e in entries:
            p = e.payload if isinstance(e.payload, dict) else {}
            client = by_id.get(str(p.get("key", "")))
            attr = RESPONSE_FIELDS.get(str(p.get("action", "")))
            at, until = p.get("at"), p.get("until")
            if client is None or attr is None or not isinstance(at, int | float):
                continue
            if not isinstance(until, int | float):
                continue
            end = min(float(until), float(at) + duration)
            if end > now and end > getattr(client, attr):
                setattr(client, attr, end)
                restored += 1
        if restored:
            logger.warning("restored %d running response(s) from the audit log", restored)
        return restored

    # -- request handling -------------------------------------------------------------------

    def _authenticate(self, request: Request) -> Client:
        who = self.io.authenticate(request)  # 401s, constant-time comparison with every key
        assert who is not None
        return self.clients[who]

    def _admit(self, client: Client) -> None:
        """403 for a blocked key; one token from its request buckets (429)."""
        now = self._clock()
        if client.blocked_until > now:
            raise _blocked(client, now)
        buckets = [b for b in (client.request_limiter,) if b is not None]
        if client.throttled_until > now:
            buckets.append(self.throttle_requests)
        for bucket in buckets:
            spend_tokens(bucket, client.id, 1, "requests")
        limit = self.config.server.key_concurrency
        if client.in_flight >= limit:
            raise Refusal(
                429,
                f"API key '{client.id}' has {limit} requests in progress, the most allowed; "
                "retry after 1 s",
                {"Retry-After": "1"},
            )

    def _charge(self, client: Client, n: int) -> None:
        """One token per input from the key's query buckets (429; 422 above a burst)."""
        buckets = [b for b in (client.limiter,) if b is not None]
        if client.throttled_until > self._clock():
            buckets.append(self.throttle)
        for bucket in buckets:
            if n > bucket.burst:
                raise Refusal(
                    422,
                    f"'inputs' has {n} items, more than this key's burst of {bucket.burst} "
                    f"queries ({bucket.rate:g} queries per second); send smaller batches",
                )
        for bucket in buckets:
            spend_tokens(bucket, client.id, n, "queries (inputs)")

    async def _read_inputs(self, client: Client, request: Request) -> FloatArray:
        """The request's batch: Content-Type (415), size (413), time (408), JSON (400/422);
        bodies above ``inline_parse_bytes`` are parsed in a worker process."""
        ctype = request.headers.get("content-type", "")
        media, _, params = ctype.partition(";")
        charset = params.strip().lower().removeprefix("charset=").strip('"')
        if media.strip().lower() not in JSON_TYPES or charset not in ("", "utf-8"):
            shown = repr(ctype[:60]) if ctype else "none"
            raise Refusal(415, f"Content-Type must be application/json, got {shown}")
        server = self.config.server
        try:
            with anyio.fail_after(server.body_timeout):
                body = await self.io.read_body(request)
        except TimeoutError:
            raise Refusal(
                408, f"the request body did not arrive within {server.body_timeout:g} s"
            ) from None
        except ClientDisconnect:  # counted as nginx does: 499, client closed request
            raise Refusal(499, "the client closed the connection during its request") from None
        if len(body) <= server.inline_parse_bytes:
            return self.io.parse_inputs(body)
        try:
            return await self.parser.parse(client.id, body)
        except InputError as exc:
            raise refusal_of(exc) from None

    def _compute(self, client: Client, x: FloatArray) -> tuple[FloatArray, list[Verdict]]:
        """Model, then detection (in a worker thread for large batches and upstreams)."""
        try:
            probs = np.asarray(self.backend.predict(x), dtype=np.float32)
        except InvGuardError as exc:  # an upstream's failure: details in the log only
            logger.error("model call failed: %s", exc)
            status = 502 if self.backend.threaded else 500
            raise Refusal(status, "the model behind the gateway failed on this batch") from None
        except Exception as exc:
            logger.error("model call failed: %s", type(exc).__name__)
            raise Refusal(500, "the model failed on this batch") from None
        if probs.shape != (len(x), self.backend.num_classes) or not np.isfinite(probs).all():
            raise Refusal(
                500,
                f"the model returned scores of shape {probs.shape} (or non-finite values) for "
                f"{len(x)} inputs and {self.backend.num_classes} classes",
            )
        verdicts: list[Verdict] = []
        if self.engine is not None and client.detect:
            verdicts = self.engine.observe(client.id, x, probs)
        return probs, verdicts

    def _respond(self, client: Client, verdicts: list[Verdict], n: int) -> list[Record]:
        """Apply the responses of flagged detectors; the audit records of new alerts."""
        now = self._clock()
        resp = self.config.detection.responses
        records: list[Record] = []
        for v in verdicts:
            if not v.flagged:
                continue
            self.metrics.flagged.inc(v.detector, amount=v.flagged_queries)
            action = self.actions[v.detector]
            rank = ACTIONS.index(action)
            last = client.last_alert.get(v.detector)
            if last is not None and now - last[0] < resp.realert_seconds and last[1] >= rank:
                continue
            client.last_alert[v.detector] = (now, rank)
            op = "<=" if v.direction == "below" else ">="
            summary = (
                f"key '{client.id}': {v.detector} score {v.score:.4g} {op} {v.threshold:g} "
                f"at query {v.first_index}"
            )
            if action == "log":
                logger.warning("detection (log only): %s", summary)
                continue
            until: float | None = None
            attr = RESPONSE_FIELDS.get(action)
            if attr is not None:
                until = now + resp.duration_seconds
                setattr(client, attr, max(getattr(client, attr), until))
            self.metrics.alerts.inc(v.detector)
            self.metrics.actions.inc(action)
            shown = f" until {_utc(until)}" if until is not None else ""
            logger.warning("alert: %s: %s%s", summary, action, shown)
            records.append(_alert_record(client, v, action, n, now, until))
        return records

    async def _record(self, records: list[Record]) -> None:
        """Commit alerts to the audit log (awaited), then queue them for the webhook."""
        entries = await asyncio.wrap_future(self.audit.submit(records))
        if self.webhook is not None:
            for e in entries:
                self.webhook.post(
                    {
                        "event": "invguard.gateway.alert",
                        "timestamp": e.timestamp,
                        "audit_seq": e.seq,
                        "audit_leaf_hash": e.leaf_hash.hex(),
                        **(e.payload if isinstance(e.payload, dict) else {}),
                    }
                )

    async def predict(self, request: Request) -> Response:
        """``POST /v1/predict``: the policy's view of the model's scores (or a JSON error);
        every answer is counted by status."""
        started = time.perf_counter()
        try:
            response = await self._predict(request)
        except Exception as exc:  # a bug: answered, counted, logged without the request
            logger.error("internal error on a prediction request: %s", type(exc).__name__)
            response = error_response(500, "internal error")
        self.metrics.requests.inc(str(response.status_code))
        self.metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _predict(self, request: Request) -> Response:
        try:
            client = self._authenticate(request)
            self._admit(client)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.message, refusal.headers)
        client.in_flight += 1
        try:
            return await self._answer(client, request)
        finally:
            client.in_flight -= 1

    async def _answer(self, client: Client, request: Request) -> Response:
        try:
            x = await self._read_inputs(client, request)
            self._charge(client, len(x))
            if self.backend.threaded or len(x) > self.inline_max_inputs:
                probs, verdicts = await run_in_threadpool(self._compute, client, x)
            else:
                probs, verdicts = self._compute(client, x)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.message, refusal.headers)
        records = self._respond(client, verdicts, len(x)) if verdicts else []
        if records:
            try:
                await self._record(records)
            except Exception as exc:  # no alert, no answer: fail closed
                logger.error("cannot record an alert in the audit log: %s", exc)
                return error_response(
                    503, "the gateway could not record this request; try again later"
                )
        now = self._clock()
        if client.blocked_until > now:
            blocked = _blocked(client, now)
            return error_response(blocked.status, blocked.message, blocked.headers)
        policy = self.degraded_policy if client.degraded_until > now else client.policy
        body = policy.render(probs, labels=client.policy.labels_only)
        self.metrics.inputs.inc(amount=len(x))
        return JSONResponse(body)

    async def metrics_endpoint(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus text, or OpenMetrics when ``Accept`` asks for it."""
        body, content_type = self.metrics.render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Deliver queued webhooks, record the stop in the audit log, release everything."""
        if self._closed:
            return
        self._closed = True
        hook = self.config.alerts.webhook
        if self.webhook is not None and hook is not None:
            self.webhook.close(hook.drain_seconds)
        try:
            self.audit.append(
                ACTOR,
                "gateway.stop",
                "gateway",
                {
                    "requests": int(self.metrics.requests.total()),
                    "alerts": int(self.metrics.alerts.total()),
                },
            )
        except Exception as exc:  # closing must not fail on a full disk
            logger.error("cannot record the gateway's stop in the audit log: %s", exc)
        self.audit.close()
        self.parser.close()
        self.backend.close()


def _alert_record(
    client: Client, v: Verdict, action: str, n: int, now: float, until: float | None
) -> Record:
    """The audit record of an alert (its payload is also the webhook's body)."""
    return (
        ACTOR,
        "gateway.alert",
        f"key:{client.id}",
        {
            "key": client.id,
            "detector": v.detector,
            "score": _round(v.score),
            "threshold": v.threshold,
            "direction": v.direction,
            "query_index": v.first_index,
            "flagged_queries": v.flagged_queries,
            "batch_size": n,
            "action": action,
            "at": round(now, 3),
            "until": None if until is None else round(until, 3),
            "details": v.details,
        },
    )


__all__ = ["RESPONSE_FIELDS", "Client", "Gateway", "body_limit"]
