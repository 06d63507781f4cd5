"""Gateway metrics in the Prometheus text exposition format (version 0.0.4), and a small parser.

No client library is needed: counters, gauges and one latency histogram are kept under a lock and
rendered on ``GET /metrics``. Reference: https://prometheus.io/docs/instrumenting/exposition_formats/
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class _Family:
    def __init__(self, name: str, kind: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name = PREFIX + name
        self.kind = kind
        self.help = help_text
        self.label_names = labels

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    """A monotonically increasing count, optionally by label values."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        lock: threading.Lock | None = None,
    ) -> None:
        super().__init__(name, "counter", help_text, labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = lock or threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def total(self) -> float:
        """The sum over all label values."""
        with self._lock:
            return sum(self._values.values())

    def seed(self, *labels: str) -> None:
        """Make a series visible at 0 before its first increment."""
        with self._lock:
            self._values.setdefault(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items
        ]


class Gauge(_Family):
    """A value read when the metrics are rendered (``fn``), e.g. the number of blocked clients."""

    def __init__(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        super().__init__(name, "gauge", help_text, ())
        self._fn = fn

    def render(self) -> list[str]:
        return [*self.header(), f"{self.name} {_number(float(self._fn()))}"]


class Histogram(_Family):
    """Cumulative buckets, sum and count, as Prometheus expects."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, "histogram", help_text, ())
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def render(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines = self.header()
        running = 0
        for bound, c in zip(self.buckets, counts, strict=False):
            running += c
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        running += counts[-1]
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {running}')
        lines.append(f"{self.name}_sum {_number(total)}")
        lines.append(f"{self.name}_count {running}")
        return lines


class GatewayMetrics:
    """Everything ``GET /metrics`` shows. Gauges are read through callables given later."""

    def __init__(self, detectors: Iterable[str] = ()) -> None:
        self.requests = Counter(
            "requests_total", "Prediction requests by HTTP status.", ("status",)
        )
        self.latency = Histogram(
            "request_duration_seconds",
            "Time from receiving a prediction request to its response, in seconds.",
            LATENCY_BUCKETS,
        )
        self.inputs = Counter("predictions_total", "Inputs answered with a prediction.")
        self.flagged = Counter(
            "flagged_queries_total", "Queries a detector flagged, by detector.", ("detector",)
        )
        self.alerts = Counter(
            "alerts_total", "Alerts raised (audit log entries), by detector.", ("detector",)
        )
        self.actions = Counter(
            "responses_total", "Responses applied to clients after a detection.", ("action",)
        )
        self.webhook = Counter(
            "webhook_deliveries_total",
            "Webhook deliveries of alerts by outcome (delivered, failed, dropped).",
            ("outcome",),
        )
        for name in detectors:
            self.flagged.seed(name)
            self.alerts.seed(name)
        self.inputs.seed()
        self._gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help_text, fn))

    def render(self) -> str:
        lines: list[str] = []
        for family in (
            self.requests,
            self.latency,
            self.inputs,
            self.flagged,
            self.alerts,
            self.actions,
            self.webhook,
        ):
            lines += family.render()
        for g in self._gauges:
            lines += g.render()
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# parsing (for tests, benchmarks and anyone without prometheus_client)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class MetricFamily:
    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[Sample] = field(default_factory=list)


class ExpositionError(ValueError):
    """The text is not in the Prometheus text exposition format."""


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{(.*)\}})?\s+(\S+)(\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_value(text: str, lineno: int) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan, "Inf": math.inf}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(f"line {lineno}: value {text!r} is not a number") from None


def parse_exposition(text: str) -> dict[str, MetricFamily]:
    """Parse Prometheus text exposition into families by name; raise :class:`ExpositionError`
    on anything malformed (bad names, labels, values, duplicate TYPE lines, samples of a family
    split across the text, histogram buckets that decrease or lack ``+Inf``)."""
    families: dict[str, MetricFamily] = {}
    closed: set[str] = set()
    current: str | None = None

    def family_of(sample_name: str) -> str:
        for fam in families.values():
            for suffix in _SUFFIXES.get(fam.type, ()):
                if sample_name == fam.name + suffix:
                    return fam.name
        return sample_name

    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_NAME, name):
                    raise ExpositionError(f"line {lineno}: bad metric name {name!r}")
                fam = families.setdefault(name, MetricFamily(name))
                if parts[1] == "TYPE":
                    kind = parts[3].strip() if len(parts) > 3 else ""
                    if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        raise ExpositionError(f"line {lineno}: unknown type {kind!r}")
                    if fam.samples or fam.type != "untyped":
                        raise ExpositionError(f"line {lineno}: TYPE of {name} after its samples")
                    fam.type = kind
                else:
                    fam.help = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ExpositionError(f"line {lineno}: not a sample line: {line[:80]!r}")
        name, _, label_text, value = m.group(1), m.group(2), m.group(3), m.group(4)
        labels: dict[str, str] = {}
        if label_text:
            pos = 0
            while pos < len(label_text):
                lm = _LABEL.match(label_text, pos)
                if lm is None:
                    raise ExpositionError(f"line {lineno}: bad labels {label_text[:80]!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        fam_name = family_of(name)
        if fam_name != current:
            if fam_name in closed:
                raise ExpositionError(f"line {lineno}: samples of {fam_name} are not together")
            if current is not None:
                closed.add(current)
            current = fam_name
        fam = families.setdefault(fam_name, MetricFamily(fam_name))
        fam.samples.append(Sample(name, labels, _parse_value(value, lineno)))
    for fam in families.values():
        if fam.type == "histogram":
            buckets = [s for s in fam.samples if s.name.endswith("_bucket")]
            bounds = [_parse_value(s.labels.get("le", ""), 0) for s in buckets]
            counts = [s.value for s in buckets]
            if not bounds or bounds[-1] != math.inf:
                raise ExpositionError(f"histogram {fam.name} has no +Inf bucket")
            if bounds != sorted(bounds) or counts != sorted(counts):
                raise ExpositionError(f"histogram {fam.name} buckets are not cumulative")
            count = [s.value for s in fam.samples if s.name == fam.name + "_count"]
            if count != [counts[-1]]:
                raise ExpositionError(f"histogram {fam.name}: _count differs from the +Inf bucket")
    return families


def sample_value(families: dict[str, MetricFamily], name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 if absent)."""
    for fam in families.values():
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0
