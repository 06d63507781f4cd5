"""The InvGuard gateway: a prediction API in front of a model that enforces the assessment's controls.

``POST /v1/predict`` takes ``{"inputs": [...]}`` (a batch of inputs with values in [0, 1]) and
answers with the output policy's view of the model's scores (``{"predictions": [[...]]}``, or
``{"labels": [...]}`` for a label-only policy). ``GET /healthz`` answers ``{"status": "ok"}``;
``GET /metrics`` gives Prometheus metrics. On the way in, a request is authenticated (API keys,
known only by SHA-256 digest; 401), checked against the key's block (403) and its token bucket
(429 with ``Retry-After``), and its body is validated (size 413, JSON 400, shape and values 422):
all of this reuses :mod:`invguard.gateway.model_server`. The model (a local PyTorch, scikit-learn
or ONNX model, or an upstream endpoint reached over a connection pool) then answers; the
:class:`~invguard.gateway.detectors.DetectionEngine` scores the batch against the key's history
using the model's full probabilities; a flagged detector triggers its configured response (log,
alert, degrade the key's outputs, throttle it, or block it for ``duration_seconds``); every alert
is committed to the audit log *before* the response is sent (503 if that fails), and posted to
the webhook in the background.

Keys are never logged: logs, metrics, alerts and the audit log name a key by its configured
``id``. Blocks, degradations and throttles survive a restart: they are rebuilt from the audit
log's alerts at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import invguard.targets  # noqa: F401 - before defenses, which import it circularly
from invguard.defenses.wrappers import (
    Compose,
    GaussianNoise,
    LabelOnly,
    OutputDefense,
    ReverseSigmoid,
    RoundScores,
    TopK,
)
from invguard.errors import InvalidParameterError, InvGuardError, MissingDependencyError
from invguard.gateway.alerts import ACTOR, AuditWriter, Record, WebhookWorker
from invguard.gateway.config import (
    ACTIONS,
    GatewayConfigError,
    LabelOnlyStep,
    LoadedGatewayConfig,
    NoiseStep,
    OnnxModel,
    OutputStep,
    PytorchModel,
    ReverseSigmoidStep,
    RoundStep,
    SklearnModel,
    TopKStep,
    UpstreamModel,
)
from invguard.gateway.detectors import DetectionEngine, EngineSettings, Verdict
from invguard.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from invguard.gateway.model_server import (
    HEALTH_PATH,
    PREDICT_PATH,
    TokenBucketLimiter,
    _error,
    _ModelApp,
    _Refusal,
    serve_in_thread,
)
from invguard.targets.base import OutputSpec

logger = logging.getLogger("invguard.gateway")

METRICS_PATH = "/metrics"
FloatArray = NDArray[np.float32]

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


# ---------------------------------------------------------------------------------------------
# the model behind the gateway


@dataclass
class Backend:
    """What the gateway calls: ``predict(x) -> (n, num_classes)`` probabilities.

    ``threaded``: always call it in a worker thread (network I/O). ``close`` releases it.
    """

    predict: Callable[[FloatArray], Any]
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    threaded: bool = False
    close: Callable[[], None] = lambda: None


def _check_shape(
    where: str, cfg_shape: tuple[int, ...] | None, cfg_classes: int | None, shape: Any, classes: int
) -> None:
    if cfg_shape is not None and tuple(cfg_shape) != tuple(shape):
        raise GatewayConfigError(
            f"{where}.input_shape: the model takes inputs of shape {list(shape)}, "
            f"not {list(cfg_shape)}"
        )
    if cfg_classes is not None and cfg_classes != classes:
        raise GatewayConfigError(
            f"{where}.num_classes: the model has {classes} classes, not {cfg_classes}"
        )


def load_backend(loaded: LoadedGatewayConfig) -> Backend:
    """Load the configured model (or connect the upstream); errors name the config field."""
    cfg = loaded.config.model
    where = loaded.where("model")
    try:
        if isinstance(cfg, PytorchModel):
            return _torch_backend(cfg, loaded, where)
        if isinstance(cfg, SklearnModel):
            return _sklearn_backend(cfg, loaded, where)
        if isinstance(cfg, OnnxModel):
            return _onnx_backend(cfg, loaded, where)
        assert isinstance(cfg, UpstreamModel)
        return _upstream_backend(cfg, where)
    except GatewayConfigError:
        raise
    except InvGuardError as exc:
        field = "url" if isinstance(cfg, UpstreamModel) else "model"
        raise GatewayConfigError(f"{where}.{field}: {exc}") from exc


def _torch_backend(cfg: PytorchModel, loaded: LoadedGatewayConfig, where: str) -> Backend:
    import torch

    from invguard.models.loading import load_user_model
    from invguard.targets import TorchTarget
    from invguard.targets.pytorch import check_normalize

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.reference is not None:
        from invguard.data import load_builtin
        from invguard.models import ModelCache, default_cache_dir, train_target

        ref = cfg.reference
        dataset = load_builtin(ref.data)
        _check_shape(
            where, cfg.input_shape, cfg.num_classes, dataset.image_shape, dataset.num_classes
        )
        trained = train_target(
            dataset, ref.arch, seed=ref.seed, cache=ModelCache(default_cache_dir())
        )
        model: torch.nn.Module = trained.model
        shape: tuple[int, ...] = tuple(dataset.image_shape)
        classes = dataset.num_classes
        desc = f"InvGuard reference {ref.arch} on {ref.data} (seed {ref.seed})"
    else:
        assert cfg.model is not None
        assert cfg.input_shape is not None
        assert cfg.num_classes is not None
        path = loaded.resolve(cfg.model)
        c, h, w = cfg.input_shape
        try:
            model, info = load_user_model(
                path,
                arch=cfg.arch,
                factory=cfg.factory,
                kwargs=cfg.kwargs or None,
                shape=(c, h, w),
                num_classes=cfg.num_classes,
                search_path=loaded.resolve(Path(".")),
            )
        except InvGuardError as exc:
            raise GatewayConfigError(f"{where}.model: {exc}") from exc
        shape, classes = tuple(cfg.input_shape), cfg.num_classes
        desc = f"PyTorch {cfg.arch or cfg.factory or info['kind']} from {path.name}"
    kind = cfg.model_output
    try:
        norm = check_normalize(cfg.normalize.pair() if cfg.normalize else None, shape[0])
    except InvGuardError as exc:
        raise GatewayConfigError(f"{where}.normalize: {exc}") from exc
    # checks the model's output (shape, class count; a softmax under "logits" is logged)
    TorchTarget(model, input_shape=shape, num_classes=classes, output=kind, normalize=norm)
    model.eval()

    def predict(x: FloatArray) -> FloatArray:  # the serving path: no query counting, no copies
        with torch.inference_mode():
            xt = torch.from_numpy(x)  # pixel space [0, 1]; normalised here when declared
            raw = model(xt if norm is None else norm.apply(xt))
            probs = (
                raw
                if kind == "probabilities"
                else raw.exp()
                if kind == "log_probabilities"
                else torch.softmax(raw, dim=1)
            )
            out: FloatArray = probs.numpy()
        return out

    return Backend(predict, shape, classes, desc)


def _sklearn_backend(cfg: SklearnModel, loaded: LoadedGatewayConfig, where: str) -> Backend:
    from invguard.targets.sklearn import SklearnTarget, load_sklearn_model

    path = loaded.resolve(cfg.model)
    est = load_sklearn_model(path, trusted=cfg.trusted)
    assert cfg.input_shape is not None
    target = SklearnTarget(est, input_shape=tuple(cfg.input_shape), num_classes=cfg.num_classes)
    if not target.output.scores:
        raise GatewayConfigError(
            f"{where}.model: the estimator ({type(est).__name__}) has no predict_proba; the "
            "gateway needs class probabilities for its output policy and detectors"
        )
    return Backend(
        target.predict,
        target.input_shape,
        target.num_classes,
        f"scikit-learn {type(est).__name__} from {path.name}",
    )


def _onnx_backend(cfg: OnnxModel, loaded: LoadedGatewayConfig, where: str) -> Backend:
    from invguard.targets.onnx import OnnxTarget

    path = loaded.resolve(cfg.model)
    target = OnnxTarget(
        path,
        input_shape=None if cfg.input_shape is None else tuple(cfg.input_shape),
        num_classes=cfg.num_classes,
        model_output=cfg.model_output,
        intra_op_threads=cfg.threads,
    )
    return Backend(target.predict, target.input_shape, target.num_classes, f"ONNX {path.name}")


def _upstream_backend(cfg: UpstreamModel, where: str) -> Backend:
    import httpx

    from invguard.assess.systems import expand_headers
    from invguard.targets.http import HttpTarget, redact_url

    assert cfg.input_shape is not None
    assert cfg.num_classes is not None
    limits = httpx.Limits(
        max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections
    )
    target = HttpTarget(
        cfg.url,
        num_classes=cfg.num_classes,
        input_shape=tuple(cfg.input_shape),
        headers=expand_headers(cfg.headers, where),
        request_template=cfg.request_template,
        response_mapping=cfg.response,
        timeout=cfg.timeout,
        retries=cfg.retries,
        max_retry_wait=min(cfg.timeout, 5.0),
        max_batch=cfg.max_batch,
        transport=httpx.HTTPTransport(limits=limits),
    )
    return Backend(
        target.predict,
        tuple(cfg.input_shape),
        cfg.num_classes,
        f"upstream {redact_url(cfg.url)}",
        threaded=True,
        close=target.close,
    )


# ---------------------------------------------------------------------------------------------
# output policy


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


def build_policy(steps: Sequence[OutputStep], num_classes: int, where: str) -> OutputPolicy:
    """Turn configured steps into an :class:`OutputPolicy` using InvGuard's output defences."""
    defenses: list[OutputDefense] = []
    decimals: int | None = None
    for i, step in enumerate(steps):
        if isinstance(step, RoundStep):
            defenses.append(RoundScores(decimals=step.decimals))
            decimals = step.decimals
        elif isinstance(step, TopKStep):
            if step.k > num_classes:
                raise GatewayConfigError(
                    f"{where}[{i}].k: must be at most the number of classes ({num_classes}), "
                    f"got {step.k}"
                )
            defenses.append(TopK(k=step.k))
        elif isinstance(step, LabelOnlyStep):
            defenses.append(LabelOnly())
        elif isinstance(step, NoiseStep):
            seed = step.seed if step.seed is not None else secrets.randbelow(2**31)
            defenses.append(GaussianNoise(sigma=step.sigma, seed=seed))
            decimals = None
        else:
            assert isinstance(step, ReverseSigmoidStep)
            defenses.append(ReverseSigmoid(beta=step.beta, gamma=step.gamma))
            decimals = None
    if not defenses:
        return OutputPolicy(None, False, None, "full probabilities")
    composed = Compose(defenses)
    return OutputPolicy(
        composed.transform(num_classes),
        any(isinstance(d, LabelOnly) for d in defenses),
        decimals,
        composed.describe(),
    )


# ---------------------------------------------------------------------------------------------
# the gateway


@dataclass
class Client:
    """A configured API key at run time (never its secret; ``id`` names it)."""

    id: str
    policy: OutputPolicy
    limiter: TokenBucketLimiter | None
    detect: bool
    blocked_until: float = 0.0
    degraded_until: float = 0.0
    throttled_until: float = 0.0
    last_alert: dict[str, tuple[float, int]] = field(default_factory=dict)


_RESPONSE_FIELDS = {
    "block": "blocked_until",
    "degrade": "degraded_until",
    "throttle": "throttled_until",
}


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(v: float) -> float | None:
    return None if not math.isfinite(v) else round(v, 6)


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
        cfg = loaded.config
        self.loaded = loaded
        self.config = cfg
        self._clock = clock
        self.backend = backend if backend is not None else load_backend(loaded)
        shape, classes = self.backend.input_shape, self.backend.num_classes
        self.inline_max_inputs = cfg.server.inline_max_inputs
        # request reading and validation are the model server's (limits, messages, 413/400/422)
        self.io = _ModelApp(
            self.backend.predict,
            input_shape=shape,
            num_classes=classes,
            output=OutputSpec(),
            api_keys=None,
            rate_limit=None,
            max_batch=cfg.server.max_batch,
            max_body_bytes=cfg.server.max_body_bytes,
            clock=monotonic,
        )
        self.io.key_digests = tuple(bytes.fromhex(k.sha256) for k in cfg.keys)
        self.base_policy = build_policy(cfg.output, classes, loaded.where("output"))
        resp = cfg.detection.responses
        self.degraded_policy = build_policy(
            resp.degraded_output, classes, loaded.where("detection.responses.degraded_output")
        )
        self.throttle = TokenBucketLimiter(
            resp.throttle.rate, resp.throttle.burst, clock=monotonic, max_clients=len(cfg.keys)
        )
        limiters: dict[tuple[float, int], TokenBucketLimiter] = {}

        def limiter(rate: float, burst: int) -> TokenBucketLimiter:
            if (rate, burst) not in limiters:
                limiters[(rate, burst)] = TokenBucketLimiter(
                    rate, burst, clock=monotonic, max_clients=len(cfg.keys)
                )
            return limiters[(rate, burst)]

        self.clients: dict[str, Client] = {}
        for i, k in enumerate(cfg.keys):
            limit = None if k.unlimited else (k.rate_limit or cfg.rate_limit)
            policy = (
                self.base_policy
                if k.output is None
                else build_policy(k.output, classes, loaded.where(f"keys[{i}].output"))
            )
            prefix = "key:" + k.sha256[:16]  # what model_server's authenticate returns
            if prefix in self.clients:
                raise GatewayConfigError(
                    loaded.where(f"keys[{i}].sha256: shares its first 64 bits with another key")
                )
            self.clients[prefix] = Client(
                k.id,
                policy,
                None if limit is None else limiter(limit.rate, limit.burst),
                k.detect and cfg.detection.enabled,
            )
        self.actions: dict[str, str] = {}
        self.engine: DetectionEngine | None = None
        det = cfg.detection
        if det.enabled:
            d = det.detectors
            settings = EngineSettings(
                input_shape=shape,
                num_classes=classes,
                history=det.history,
                max_clients=det.max_clients,
                projection_dim=det.projection_dim,
                seed=det.seed,
                knn=d.knn.model_dump(exclude={"enabled", "action"}) if d.knn.enabled else None,
                blacklight=d.blacklight.model_dump(exclude={"enabled", "action"})
                if d.blacklight.enabled
                else None,
                inversion=d.inversion.model_dump(exclude={"enabled", "action"})
                if d.inversion.enabled
                else None,
            )
            self.engine = DetectionEngine(settings)
            self.actions = {name: getattr(d, name).action for name in self.engine.names}
        self.metrics = GatewayMetrics(self.engine.names if self.engine else ())
        self._install_gauges()
        from invguard.audit.errors import AuditError

        try:
            self.audit = AuditWriter(loaded.resolve(cfg.alerts.audit_log))
        except AuditError as exc:
            raise GatewayConfigError(loaded.where(f"alerts.audit_log: {exc}")) from None
        self.webhook: WebhookWorker | None = None
        try:
            self.webhook = self._webhook(loaded, webhook_transport)
        except BaseException:
            self.audit.close()
            raise
        self._closed = False
        restored = self._restore()
        self.audit.append(
            ACTOR,
            "gateway.start",
            "gateway",
            {
                "config_sha256": loaded.digest(),
                "model": self.backend.description,
                "keys": [k.id for k in cfg.keys],
                "output": self.base_policy.description,
                "detectors": {
                    name: {
                        "threshold": getattr(cfg.detection.detectors, name).threshold,
                        "action": action,
                    }
                    for name, action in self.actions.items()
                },
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

    def _webhook(self, loaded: LoadedGatewayConfig, transport: Any) -> WebhookWorker | None:
        hook = self.config.alerts.webhook
        if hook is None:
            return None
        secret = None
        if hook.secret_env is not None:
            secret = os.environ.get(hook.secret_env)
            if not secret:
                raise GatewayConfigError(
                    loaded.where(
                        f"alerts.webhook.secret_env: environment variable {hook.secret_env} "
                        "is not set"
                    )
                )
        from invguard.assess.systems import expand_headers

        return WebhookWorker(
            hook.url,
            headers=expand_headers(hook.headers, loaded.where("alerts.webhook")),
            secret=secret,
            timeout=hook.timeout,
            retries=hook.retries,
            backoff=hook.backoff,
            queue_size=hook.queue_size,
            on_outcome=lambda outcome: self.metrics.webhook.inc(outcome),
            transport=transport,
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
            attr = _RESPONSE_FIELDS.get(str(p.get("action", "")))
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
        now = self._clock()
        if client.blocked_until > now:
            wait = str(max(1, math.ceil(client.blocked_until - now)))
            raise _Refusal(
                403,
                f"API key '{client.id}' is blocked until {_utc(client.blocked_until)} after a "
                "suspected model-inversion query pattern; contact the API's owner",
                {"Retry-After": wait},
            )
        buckets = [b for b in (client.limiter,) if b is not None]
        if client.throttled_until > now:
            buckets.append(self.throttle)
        for bucket in buckets:
            wait_s = bucket.take(client.id)
            if wait_s > 0:
                retry_after = str(max(1, math.ceil(wait_s)))
                raise _Refusal(
                    429,
                    f"rate limit exceeded: at most {bucket.rate:g} requests per second "
                    f"(burst {bucket.burst}); retry after {retry_after} s",
                    {"Retry-After": retry_after},
                )

    def _compute(self, client: Client, x: FloatArray) -> tuple[FloatArray, list[Verdict]]:
        """Model, then detection (in a worker thread for large batches and upstreams)."""
        try:
            probs = np.asarray(self.backend.predict(x), dtype=np.float32)
        except InvGuardError as exc:  # an upstream's failure: details in the log only
            logger.error("model call failed: %s", exc)
            status = 502 if self.backend.threaded else 500
            raise _Refusal(status, "the model behind the gateway failed on this batch") from None
        except Exception as exc:
            logger.error("model call failed: %s", type(exc).__name__)
            raise _Refusal(500, "the model failed on this batch") from None
        if probs.shape != (len(x), self.backend.num_classes) or not np.isfinite(probs).all():
            raise _Refusal(
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
            attr = _RESPONSE_FIELDS.get(action)
            if attr is not None:
                until = now + resp.duration_seconds
                setattr(client, attr, max(getattr(client, attr), until))
            self.metrics.alerts.inc(v.detector)
            self.metrics.actions.inc(action)
            logger.warning(
                "alert: %s: %s%s",
                summary,
                action,
                f" until {_utc(until)}" if until is not None else "",
            )
            records.append(
                (
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
            )
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
        started = time.perf_counter()
        response = await self._predict(request)
        self.metrics.requests.inc(str(response.status_code))
        self.metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _predict(self, request: Request) -> Response:
        try:
            client = self._authenticate(request)
            self._admit(client)
            x = self.io.parse_inputs(await self.io.read_body(request))
            if self.backend.threaded or len(x) > self.inline_max_inputs:
                probs, verdicts = await run_in_threadpool(self._compute, client, x)
            else:
                probs, verdicts = self._compute(client, x)
        except _Refusal as refusal:
            return _error(refusal.status, refusal.message, refusal.headers)
        if verdicts:
            records = self._respond(client, verdicts, len(x))
            if records:
                try:
                    await self._record(records)
                except Exception as exc:  # no alert, no answer: fail closed
                    logger.error("cannot record an alert in the audit log: %s", exc)
                    return _error(503, "the gateway could not record this request; try again later")
        now = self._clock()
        if client.blocked_until > now:
            wait = str(max(1, math.ceil(client.blocked_until - now)))
            return _error(
                403,
                f"API key '{client.id}' is blocked until {_utc(client.blocked_until)} after a "
                "suspected model-inversion query pattern; contact the API's owner",
                {"Retry-After": wait},
            )
        policy = self.degraded_policy if client.degraded_until > now else client.policy
        body = policy.render(probs, labels=client.policy.labels_only)
        self.metrics.inputs.inc(amount=len(x))
        return JSONResponse(body)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

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
        self.backend.close()


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
            return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))
        return _error(500, "internal error")  # pragma: no cover

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("internal error: %s", type(exc).__name__)
        return _error(500, "internal error")

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


@contextlib.contextmanager
def running_gateway(loaded: LoadedGatewayConfig, **kwargs: Any) -> Iterator[tuple[str, Gateway]]:
    """Serve a gateway on a free loopback port in a thread: yields ``(base_url, gateway)``;
    stops the server and closes the gateway on exit."""
    app = create_gateway_app(loaded, **kwargs)
    gateway: Gateway = app.state.gateway
    try:
        with serve_in_thread(app) as base:
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
    )
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
