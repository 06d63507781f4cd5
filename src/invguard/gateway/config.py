"""The gateway configuration (``gateway.yaml``), validated with pydantic.

Errors name the file, the field path and what was expected, on one line, e.g.
``gateway.yaml: keys[0].sha256: expected the SHA-256 digest of the key as 64 hex digits ...``.
Relative paths in the file are resolved against the file's folder. API keys appear only as
SHA-256 digests (``invguard gateway hash-key`` makes one); a plain-text key is refused. Secrets
for the upstream endpoint and the webhook are read from environment variables (``${NAME}``).

The model source shares its fields with the assessment's targets
(:mod:`invguard.config_fields`, loaded by :mod:`invguard.models.sources`). Output steps are spelt
as the assessment's output defences, ``{name: top_k, params: {k: 3}}`` (canonical); the older
``{type: top_k, k: 3}`` is still accepted, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from invguard.config_errors import ConfigError, friendly_error, is_validator_tag
from invguard.config_fields import (
    ConfigPath,
    ConfigVersion,
    HttpSource,
    OnnxSource,
    SklearnSource,
    TorchSource,
)
from invguard.config_yaml import YamlDocument, error_prefix, load_yaml_config

CONFIG_VERSION = 1
ACTIONS = ("log", "alert", "degrade", "throttle", "block")
"""Responses to a detection, weakest first; each one from ``alert`` on also alerts."""
Action = Literal["log", "alert", "degrade", "throttle", "block"]
ARCHS = ("softmax", "mlp", "cnn")
BUILTIN_DATA = ("att-faces", "att-faces-full", "att-faces-private30", "digits")
DEFAULT_AUDIT_LOG = Path("invguard-gateway-audit.db")
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class GatewayConfigError(ConfigError):
    """The gateway configuration is missing, unreadable or invalid (a :class:`ConfigError`)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ------------------------------------------------------------------------------------------------
# the model behind the gateway


class _Shape(_Model):
    input_shape: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Strict(False)] | None = None
    num_classes: int | None = Field(None, ge=2)

    @field_validator("input_shape")
    @classmethod
    def _non_empty(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and not v:
            raise ValueError("must list at least one dimension, e.g. [1, 56, 46]")
        return v


class ReferenceSource(_Model):
    """An InvGuard reference model, trained on a built-in data set on first use and cached."""

    arch: Literal["softmax", "mlp", "cnn"]
    data: Literal["att-faces", "att-faces-full", "att-faces-private30", "digits"] = "att-faces"
    seed: int = Field(0, ge=0)


class PytorchModel(_Shape, TorchSource):
    """A PyTorch model, loaded by :func:`invguard.models.load_user_model`: a ``torch.export``
    program (``model: mine.pt2``), weights with ``factory`` (your own ``pkg.module:function``,
    called with ``kwargs``) or with a reference ``arch``, or a reference model. A file needs
    ``input_shape`` (channels, height, width) and ``num_classes``; a reference model takes them
    from its data set. ``model_output`` says what the model returns (``probabilities`` when it
    ends in softmax); the gateway always answers probabilities. ``normalize: {mean: [...],
    std: [...]}`` when the model takes ``(x - mean) / std``: requests stay in pixel space [0, 1]
    and the gateway normalises them before the model."""

    type: Literal["pytorch"]
    reference: ReferenceSource | None = None
    threads: int | None = Field(None, ge=1, le=256)

    @model_validator(mode="after")
    def _one_source(self) -> PytorchModel:
        if (self.model is None) == (self.reference is None):
            raise ValueError(
                "set exactly one of 'model' (a .pt2 program, or weights with 'factory' or 'arch') "
                "or 'reference'"
            )
        problem = self.weights_problem()
        if problem is not None:
            raise ValueError(problem)
        if self.model is not None:
            missing = [f for f in ("input_shape", "num_classes") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"'{missing[0]}' is required with 'model'")
            assert self.input_shape is not None
            if len(self.input_shape) != 3:
                raise ValueError(
                    "'input_shape' must be [channels, height, width] for a PyTorch image model, "
                    f"got {list(self.input_shape)}"
                )
        return self


class SklearnModel(_Shape, SklearnSource):
    """A scikit-learn classifier saved with skops (never unpickled)."""

    @model_validator(mode="after")
    def _shape_given(self) -> SklearnModel:
        if self.input_shape is None:
            raise ValueError("'input_shape' is required for a scikit-learn model")
        return self


class OnnxModel(_Shape, OnnxSource):
    """An ONNX classifier run with onnxruntime (CPU)."""

    threads: int = Field(1, ge=1, le=256)


class UpstreamModel(_Shape, HttpSource):
    """A prediction endpoint the gateway forwards to (it must return full scores). Header values
    may name environment variables as ``${NAME}``, so that no secret is written into the file."""

    type: Literal["upstream"]
    response: str = "/predictions"
    retries: int = Field(1, ge=0, le=10)
    max_batch: int = Field(256, ge=1)
    max_connections: int = Field(32, ge=1, le=1024)

    @model_validator(mode="after")
    def _shape_given(self) -> UpstreamModel:
        if self.input_shape is None or self.num_classes is None:
            raise ValueError("'input_shape' and 'num_classes' are required for an upstream")
        return self


ModelConfig = Annotated[
    PytorchModel | SklearnModel | OnnxModel | UpstreamModel, Field(discriminator="type")
]


# ------------------------------------------------------------------------------------------------
# output policy


class RoundStep(_Model):
    type: Literal["round"]
    decimals: int = Field(ge=0, le=8)


class TopKStep(_Model):
    type: Literal["top_k"]
    k: int = Field(ge=1)


class LabelOnlyStep(_Model):
    type: Literal["label_only"]


class NoiseStep(_Model):
    type: Literal["noise"]
    sigma: float = Field(gt=0, le=1)
    seed: int | None = Field(None, ge=0)


class ReverseSigmoidStep(_Model):
    type: Literal["reverse_sigmoid"]
    beta: float = Field(1.0, gt=0)
    gamma: float = Field(0.1, gt=0)


STEP_NAMES = ("round", "top_k", "label_only", "noise", "reverse_sigmoid")
"""The output steps, in the names of :data:`invguard.defenses.wrappers.OUTPUT_DEFENSES`."""


def _step_error(errors: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data("OutputStep", errors)


def _value_error(loc: tuple[int | str, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)


def _canonical_step(value: dict[str, Any], handler: ValidatorFunctionWrapHandler) -> Any:
    """``{name: top_k, params: {k: 3}}``, validated as the typed step (errors name ``params.k``)."""
    extra = sorted(str(k) for k in value if k not in ("name", "params"))
    if extra:
        msg = "unknown field (an output step has 'name' and 'params')"
        raise _step_error([_value_error((extra[0],), msg, value[extra[0]])])
    name, params = value["name"], value.get("params", {})
    if name not in STEP_NAMES:
        msg = f"unknown output step {name!r} (expected one of: {', '.join(STEP_NAMES)})"
        raise _step_error([_value_error(("name",), msg, name)])
    if not isinstance(params, dict):
        msg = "must be a mapping of the step's parameters, e.g. {k: 3}"
        raise _step_error([_value_error(("params",), msg, params)])
    if "type" in params:
        msg = "unknown field (the step is named by 'name')"
        raise _step_error([_value_error(("params", "type"), msg, params["type"])])
    try:
        return handler({"type": name, **params})
    except ValidationError as exc:
        moved: list[InitErrorDetails] = []
        for e in exc.errors():
            loc = ("params", *e["loc"][1:])  # the first part is the union member's tag
            detail = InitErrorDetails(type=e["type"], loc=loc, input=e["input"])
            if "ctx" in e:
                detail["ctx"] = e["ctx"]
            moved.append(detail)
        raise _step_error(moved) from None


def _either_spelling(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, dict) and "name" in value:
        return _canonical_step(value, handler)
    return handler(value)  # the deprecated {type: top_k, k: 3}, or a step model


OutputStep = Annotated[
    RoundStep | TopKStep | LabelOnlyStep | NoiseStep | ReverseSigmoidStep,
    Field(discriminator="type"),
    WrapValidator(_either_spelling),
]
"""An output step: ``{name: top_k, params: {k: 3}}`` (canonical, as the assessment's output
defences) or the deprecated ``{type: top_k, k: 3}``; validated to the typed step."""


# ------------------------------------------------------------------------------------------------
# keys and limits


class RateLimit(_Model):
    """Token buckets of a key. ``rate`` queries (inputs) per second, bursts of up to ``burst``
    queries: a request of n inputs spends n tokens, so batching does not multiply the limit, and
    a request of more inputs than ``burst`` is refused (422). ``requests`` requests per second,
    bursts of up to ``request_burst``, bound the requests themselves, valid or not (each one
    costs reading and parsing its body); null: the same numbers as ``rate`` and ``burst``."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)
    requests: float | None = Field(None, gt=0)
    request_burst: int | None = Field(None, ge=1)

    @property
    def request_limit(self) -> tuple[float, int]:
        """The request bucket: (requests per second, burst)."""
        rate = self.requests if self.requests is not None else self.rate
        return rate, self.request_burst if self.request_burst is not None else self.burst


class KeyConfig(_Model):
    """An API key, known only by its SHA-256 digest; ``id`` names it in logs, metrics and alerts.

    ``rate_limit`` and ``output`` override the defaults (``rate_limit: null`` means unlimited);
    ``detect: false`` exempts a trusted client from stateful detection."""

    id: str = Field(pattern=KEY_ID_PATTERN)
    sha256: str
    rate_limit: RateLimit | None = None
    output: list[OutputStep] | None = None
    detect: bool = True
    note: str = ""

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, v: str) -> str:
        text = v.strip().lower()
        if text.startswith("sha256:"):
            text = text[len("sha256:") :]
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(
                "expected the SHA-256 digest of the key as 64 hex digits "
                "(make one with 'invguard gateway hash-key'), got a value of "
                f"{len(v)} characters"
            )
        return text

    @property
    def unlimited(self) -> bool:
        return "rate_limit" in self.model_fields_set and self.rate_limit is None


# ------------------------------------------------------------------------------------------------
# detection


class KnnDetectorConfig(_Model):
    """Chen, Carlini and Wagner (2019): flag a query whose mean distance to its ``k`` nearest
    earlier queries of the same key (RMS pixel distance, after the projection) is at most
    ``threshold``."""

    enabled: bool = True
    k: int = Field(20, ge=1, le=1000)
    threshold: float = Field(0.04, gt=0)
    action: Action = "block"


class BlacklightConfig(_Model):
    """Li et al. (USENIX Security 2022): quantise values to steps of ``quantization``, hash every
    ``window`` consecutive values, keep the ``hashes`` largest distinct hashes, and flag a query
    that shares at least ``threshold`` of them with ``min_matches`` earlier queries of the same
    key (1, the paper's rule: with any one)."""

    enabled: bool = True
    quantization: float = Field(0.2, gt=0, le=1)
    window: int = Field(20, ge=1, le=4096)
    hashes: int = Field(50, ge=1, le=1000)
    threshold: float = Field(0.5, gt=0, le=1)
    min_matches: int = Field(5, ge=1, le=100_000)
    action: Action = "block"


class InversionDetectorConfig(_Model):
    """InvGuard's exploration-and-targeting detector: over the last ``window`` queries of a key,
    ``U * (1 + max(P, F)) / 2`` with ``U`` the share of queries whose top probability is below
    ``confidence``, ``P`` the share of probes (within ``probe_radius`` RMS of an earlier input,
    exact repeats excluded) and ``F`` the share of the most frequent predicted class; flagged at
    ``threshold`` once ``min_queries`` queries were seen."""

    enabled: bool = True
    window: int = Field(100, ge=2, le=100_000)
    min_queries: int = Field(50, ge=1)
    confidence: float = Field(0.5, gt=0, le=1)
    probe_radius: float = Field(0.05, gt=0)
    threshold: float = Field(0.3, gt=0, le=1)
    action: Action = "block"

    @model_validator(mode="after")
    def _min_in_window(self) -> InversionDetectorConfig:
        if self.min_queries > self.window:
            raise ValueError(
                f"'min_queries' ({self.min_queries}) must be at most 'window' ({self.window})"
            )
        return self


class CrossKeyConfig(_Model):
    """Near-duplicate queries across keys (one table for all keys, Blacklight-style): inputs are
    hashed by ``bands`` sub-vectors of ``band_size`` cells of width ``width`` of a random
    projection (RMS pixel units); an earlier query sharing ``min_shared`` bands is a
    near-duplicate; a query with ``threshold`` near-duplicates from at least ``min_keys`` keys
    is flagged, and the alert names the keys that sent at least ``name_min`` of them. Only
    queries whose top probability is below ``confidence`` are kept (1: all), the last
    ``capacity`` of them. The default threshold was chosen on half of the evaluation's streams
    (``benchmarks/eval_detection.py --adaptive``)."""

    enabled: bool = True
    bands: int = Field(16, ge=1, le=256)
    band_size: int = Field(4, ge=1, le=64)
    width: float = Field(0.25, gt=0)
    min_shared: int = Field(8, ge=1, le=256)
    threshold: int = Field(46, ge=1)
    min_keys: int = Field(2, ge=1)
    name_min: int = Field(2, ge=1)
    confidence: float = Field(0.5, gt=0, le=1)
    capacity: int = Field(20_000, ge=16, le=10_000_000)
    action: Action = "alert"

    @model_validator(mode="after")
    def _shared_in_bands(self) -> CrossKeyConfig:
        if self.min_shared > self.bands:
            raise ValueError(
                f"'min_shared' ({self.min_shared}) must be at most 'bands' ({self.bands})"
            )
        return self


class DetectorSet(_Model):
    knn: KnnDetectorConfig = KnnDetectorConfig()
    blacklight: BlacklightConfig = BlacklightConfig()
    inversion: InversionDetectorConfig = InversionDetectorConfig()
    cross_key: CrossKeyConfig = CrossKeyConfig()


class ResponsesConfig(_Model):
    """What ``degrade``, ``throttle`` and ``block`` do, and for how long (``duration_seconds``;
    they survive restarts, being rebuilt from the audit log). An alert for a key and detector
    is repeated at most every ``realert_seconds`` while the detector keeps flagging."""

    duration_seconds: float = Field(3600.0, gt=0)
    degraded_output: list[OutputStep] = Field(default_factory=lambda: _labels(), min_length=1)
    throttle: RateLimit = RateLimit(rate=1.0, burst=5)
    realert_seconds: float = Field(300.0, ge=0)


def _labels() -> list[OutputStep]:
    return [LabelOnlyStep(type="label_only")]


class DetectionConfig(_Model):
    """Stateful detection per API key, with bounded memory: at most ``max_clients`` keys are
    tracked (least recently used dropped first) and ``history`` queries per key. Inputs are
    reduced by a fixed random projection to ``projection_dim`` dimensions (null: raw inputs);
    ``seed`` fixes the projection and hashes (null: a secret random seed per start)."""

    enabled: bool = True
    max_clients: int = Field(1000, ge=1, le=1_000_000)
    history: int = Field(1000, ge=2, le=100_000)
    projection_dim: int | None = Field(64, ge=1, le=4096)
    seed: int | None = Field(None, ge=0)
    detectors: DetectorSet = DetectorSet()
    responses: ResponsesConfig = ResponsesConfig()


# ------------------------------------------------------------------------------------------------
# alerts, server, root


class WebhookConfig(_Model):
    """Alerts are POSTed as JSON by a background worker, with retries. ``secret_env`` names an
    environment variable whose value signs each body (``X-InvGuard-Signature: sha256=<hmac>``).
    At shutdown, queued alerts are delivered for up to ``drain_seconds`` (they are all in the
    audit log anyway)."""

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    secret_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    backoff: float = Field(0.5, ge=0)
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    drain_seconds: float = Field(5.0, ge=0, le=600)


class AlertsConfig(_Model):
    audit_log: ConfigPath = DEFAULT_AUDIT_LOG
    webhook: WebhookConfig | None = None


class ServerConfig(_Model):
    """Where to listen (loopback by default) and the limits on each request. Batches of at most
    ``inline_max_inputs`` inputs run on the event loop (less overhead per request); larger
    ones, and every upstream call, run in worker threads.

    Request bodies: a body is refused (413, before it is read when it declares its length) above
    ``max_body_bytes`` or above ``max_bytes_per_value`` bytes per value of a full batch (plus 64
    KiB), whichever is less; it must arrive within ``body_timeout`` seconds (408). Bodies of at
    most ``inline_parse_bytes`` are parsed on the event loop; larger ones in ``parse_workers``
    worker processes, at most ``parse_queue`` at once (503 beyond) and one per key (429 beyond),
    so that large bodies from one key do not slow the others. A key has at most
    ``key_concurrency`` requests in progress (429 beyond).

    Connections: request headers must arrive within ``header_timeout`` seconds of a connection's
    opening (or of its previous response), and headers still incomplete after
    ``max_header_bytes`` bytes are refused (400); an idle keep-alive connection is closed after
    ``keep_alive_timeout`` seconds; above ``max_connections`` open connections the longest idle
    ones are closed (never one with a request in progress)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(16 * 2**20, ge=64)
    max_batch: int = Field(256, ge=1, le=100_000)
    inline_max_inputs: int = Field(8, ge=0)
    max_bytes_per_value: int = Field(48, ge=4, le=4096)
    body_timeout: float = Field(30.0, gt=0, le=3600)
    inline_parse_bytes: int = Field(64 * 2**10, ge=0)
    parse_workers: int = Field(2, ge=1, le=64)
    parse_queue: int = Field(8, ge=1, le=10_000)
    key_concurrency: int = Field(8, ge=1, le=100_000)
    header_timeout: float = Field(10.0, gt=0, le=3600)
    max_header_bytes: int = Field(16 * 2**10, ge=1024, le=2**20)
    keep_alive_timeout: int = Field(5, ge=1, le=3600)
    max_connections: int = Field(1000, ge=1, le=1_000_000)


class GatewayConfig(_Model):
    version: ConfigVersion = 1
    server: ServerConfig = ServerConfig()
    model: ModelConfig
    keys: list[KeyConfig] = Field(min_length=1)
    rate_limit: RateLimit | None = RateLimit(
        rate=1000.0, burst=2000, requests=100.0, request_burst=200
    )
    output: list[OutputStep] = Field(default_factory=list)
    detection: DetectionConfig = DetectionConfig()
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _unique_keys(self) -> GatewayConfig:
        ids = [k.id for k in self.keys]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"key id {dup[0]!r} is used twice")
        digests = [k.sha256 for k in self.keys]
        if len(set(digests)) != len(digests):
            twice = next(k.id for k in self.keys if digests.count(k.sha256) > 1)
            raise ValueError(f"key {twice!r} has the same sha256 as another key")
        return self


# ------------------------------------------------------------------------------------------------
# loading


class LoadedGatewayConfig:
    """A validated configuration with its file path (relative paths resolve against its folder)."""

    def __init__(self, config: GatewayConfig, path: Path | None) -> None:
        self.config = config
        self.path = path
        self.base = path.parent if path is not None else Path.cwd()

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base / p)

    def where(self, field: str) -> str:
        """``gateway.yaml: <field>``: the prefix of an error about ``field``."""
        return f"{self.path}: {field}" if self.path is not None else field

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the validated configuration (key digests included,
        plain-text keys never being part of it)."""
        blob = json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


EXAMPLE_CONFIG = """\
# InvGuard gateway configuration: `invguard serve --config gateway.yaml`
version: 1
server:
  host: 127.0.0.1          # loopback only; put a TLS-terminating proxy in front for remote use
  port: 8080
  max_batch: 256           # inputs per request
  max_body_bytes: 16777216 # and at most 48 bytes per value of a full batch (max_bytes_per_value)
  # header_timeout: 10, body_timeout: 30, max_connections: 1000, parse_workers: 2 (see the docs)
model:                     # one of: pytorch (file or reference), sklearn (skops), onnx, upstream
  type: pytorch
  reference: {arch: mlp, data: att-faces}   # or: model: mine.pt2 (a torch.export program), or
                                            #     model: w.safetensors with factory: pkg.mod:fn
                                            #     (kwargs: {...}) or arch: mlp; then also
                                            #     input_shape: [1, 56, 46], num_classes: 40
                                            #     (model_output: probabilities if it ends in softmax)
# model: {type: upstream, url: "http://10.0.0.5:9000/v1/predict",
#         headers: {Authorization: "Bearer ${UPSTREAM_TOKEN}"}, input_shape: [1, 56, 46],
#         num_classes: 40}
keys:                      # SHA-256 digests only: `invguard gateway hash-key --generate --id alice`
  - id: alice
    sha256: "<64 hex digits>"
    # rate_limit: {rate: 20, burst: 40}    # per key, in queries; null: unlimited
    # output: [{name: label_only}]         # per key policy
rate_limit: {rate: 1000, burst: 2000,      # default per key: queries (inputs) per second,
             requests: 100, request_burst: 200}   # and requests per second (429, Retry-After)
output:                    # applied in order: round, top_k, label_only, noise, reverse_sigmoid
  - {name: top_k, params: {k: 3}}
  - {name: round, params: {decimals: 2}}
detection:
  max_clients: 1000        # keys tracked (least recently used dropped first)
  history: 1000            # queries remembered per key
  projection_dim: 64       # fixed random projection of the inputs (null: raw)
  detectors:               # action: log | alert | degrade | throttle | block
    knn: {k: 20, threshold: 0.04, action: block}
    blacklight: {quantization: 0.2, window: 20, hashes: 50, threshold: 0.5, min_matches: 5,
                 action: block}
    inversion: {window: 100, min_queries: 50, confidence: 0.5, probe_radius: 0.05,
                threshold: 0.3, action: block}
    cross_key: {threshold: 46, min_keys: 2, capacity: 20000, action: alert}  # all keys' queries
  responses:
    duration_seconds: 3600
    degraded_output: [{name: label_only}]
    throttle: {rate: 1, burst: 5}
alerts:
  audit_log: invguard-gateway-audit.db
  # webhook: {url: "https://hooks.example/invguard", secret_env: INVGUARD_WEBHOOK_SECRET}
"""


def hash_api_key(key: str) -> str:
    """The SHA-256 digest (hex) of an API key, as the configuration stores it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _is_union_tag(part: int | str) -> bool:
    """pydantic adds union members' tags to error locations; they are not field names."""
    if isinstance(part, int):
        return False
    return (
        part in ("pytorch", "sklearn", "onnx", "upstream")
        or part in STEP_NAMES
        or is_validator_tag(part)
    )


def _plain_key_hint(loc: tuple[int | str, ...]) -> str | None:
    if loc and str(loc[-1]) in ("key", "api_key", "secret", "token") and "keys" in loc:
        return (
            "plain-text API keys are not accepted; store only the key's SHA-256 digest as "
            "'sha256' (make one with 'invguard gateway hash-key')"
        )
    return None


def _friendly(err: Any, raw: Any) -> str:
    return friendly_error(
        err, raw, GatewayConfig, is_union_tag=_is_union_tag, unknown_field_hint=_plain_key_hint
    )


def parse_gateway_config(
    raw: Any, path: Path | None = None, doc: YamlDocument | None = None
) -> LoadedGatewayConfig:
    """Validate an already parsed document; raise :class:`GatewayConfigError` (one line, with
    the line of the field at fault when ``doc``, the parsed file, knows it)."""
    where = f"{path}: " if path is not None else ""
    if not isinstance(raw, dict):
        raise GatewayConfigError(
            f"{where}expected a mapping at the top level, got {type(raw).__name__}"
        )
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        more = len(errors) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        at = error_prefix(path, doc, tuple(x for x in first["loc"] if not _is_union_tag(x)))
        raise GatewayConfigError(f"{at}{_friendly(first, raw)}{tail}") from None
    for field, step in _old_steps(raw):
        params = ", ".join(f"{k}: {v}" for k, v in step.items() if k != "type")
        canonical = f"name: {step['type']}" + (f", params: {{{params}}}" if params else "")
        warnings.warn(
            f"{where}{field}: the output step spelling {{type: {step['type']}, ...}} is "
            f"deprecated; write {{{canonical}}}",
            DeprecationWarning,
            stacklevel=2,
        )
    return LoadedGatewayConfig(config, path)


def _old_steps(raw: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The output steps of a (valid) document written in the deprecated ``{type: ...}`` form."""
    keys = raw.get("keys") or []
    responses = (raw.get("detection") or {}).get("responses") or {}
    lists = [("output", raw.get("output"))]
    lists += [(f"keys[{i}].output", k.get("output")) for i, k in enumerate(keys)]
    lists.append(("detection.responses.degraded_output", responses.get("degraded_output")))
    for field, steps in lists:
        for j, step in enumerate(steps or []):
            if isinstance(step, dict) and "name" not in step:
                yield f"{field}[{j}]", step


def load_gateway_config(path: str | Path) -> LoadedGatewayConfig:
    """Read and validate ``path``; raise :class:`GatewayConfigError` with a one-line message
    (``gateway.yaml:7: keys[0].sha256: ...``)."""
    p = Path(path)
    doc = load_yaml_config(
        p, error=GatewayConfigError, not_found="gateway configuration file not found"
    )
    return parse_gateway_config(doc.data, p, doc)
