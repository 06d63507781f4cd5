"""Gateway metrics with ``prometheus_client``, in a registry of the gateway's own (no global state).

``GET /metrics`` gives the Prometheus text format (0.0.4), or OpenMetrics when the client asks
for it in its ``Accept`` header. Besides the gateway's counters, gauges and latency histogram:
the process's CPU, memory and open files (``process_*``), the interpreter (``python_info``,
``python_gc_*``) and ``invguard_build_info``. :func:`parse_exposition` and :func:`sample_value`
read an exposition back (tests, benchmarks), with ``prometheus_client``'s parser.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable

from invguard import __version__
from invguard.errors import MissingDependencyError

try:  # prometheus_client is part of the optional 'serve' extra
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        GCCollector,
        Histogram,
        Info,
        Metric,
        PlatformCollector,
        ProcessCollector,
    )
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("prometheus-client", "serve") from exc

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PREFIX = "invguard_gateway_"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class LabelledCounter:
    """A counter by label values (``inc``, ``value``, ``total``) in a registry."""

    def __init__(
        self, registry: CollectorRegistry, name: str, help_text: str, labels: tuple[str, ...] = ()
    ) -> None:
        self.name = PREFIX + name  # ends in _total
        self._registry = registry
        self._labels = labels
        self._counter = Counter(self.name, help_text, labels, registry=registry)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        (self._counter.labels(*labels) if labels else self._counter).inc(amount)

    def seed(self, *labels: str) -> None:
        """Make a series visible at 0 before its first increment."""
        if labels:
            self._counter.labels(*labels)

    def value(self, *labels: str) -> float:
        got = self._registry.get_sample_value(
            self.name, dict(zip(self._labels, labels, strict=True))
        )
        return got or 0.0

    def total(self) -> float:
        """The sum over all label values."""
        return sum(
            s.value for m in self._counter.collect() for s in m.samples if s.name == self.name
        )


class GatewayMetrics:
    """Everything ``GET /metrics`` shows. Gauges read their value from callables given later."""

    def __init__(self, detectors: Iterable[str] = (), *, model: str = "") -> None:
        reg = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = LabelledCounter(
            reg, "requests_total", "Prediction requests by HTTP status.", ("status",)
        )
        self.latency = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from receiving a prediction request to its response, in seconds.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.inputs = LabelledCounter(
            reg, "predictions_total", "Inputs answered with a prediction."
        )
        self.flagged = LabelledCounter(
            reg, "flagged_queries_total", "Queries a detector flagged, by detector.", ("detector",)
        )
        self.alerts = LabelledCounter(
            reg, "alerts_total", "Alerts raised (audit log entries), by detector.", ("detector",)
        )
        self.actions = LabelledCounter(
            reg, "responses_total", "Responses applied to clients after a detection.", ("action",)
        )
        self.webhook = LabelledCounter(
            reg,
            "webhook_deliveries_total",
            "Webhook deliveries of alerts by outcome (delivered, failed, dropped).",
            ("outcome",),
        )
        for name in detectors:
            self.flagged.seed(name)
            self.alerts.seed(name)
        info = Info("invguard_build", "InvGuard's version and the model served.", registry=reg)
        info.info({"version": __version__, "python": platform.python_version(), "model": model})
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """A gauge whose value is ``fn()`` when the metrics are read."""
        Gauge(PREFIX + name, help_text, registry=self.registry).set_function(fn)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics if ``accept`` asks for it."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


def parse_exposition(text: str) -> dict[str, Metric]:
    """The metric families of an exposition, by name (counters lose ``_total``, as
    ``prometheus_client`` names them); raises ``ValueError`` on malformed text."""
    return {m.name: m for m in text_string_to_metric_families(text)}


def sample_value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 if absent)."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "PREFIX",
    "GatewayMetrics",
    "LabelledCounter",
    "parse_exposition",
    "sample_value",
]
