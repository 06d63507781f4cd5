"""Model sources: where a model comes from in a configuration file, and the one loader of them.

Shared by the assessment config (``systems[].target``, :mod:`invguard.assess.config`) and the
gateway config (``model``, :mod:`invguard.gateway.config`). The schema pieces
(:mod:`invguard.config_fields`, re-exported here; no torch import) are the fields both configs
spell the same way; each config subclasses them with its own ``type`` tag, defaults and extra
fields, so that the YAML each one accepts stays its own. The loader builds a
:class:`~invguard.targets.Target` from a source; every error is a one-line
:class:`~invguard.config_errors.ConfigError` that names the field, e.g.
``systems[0].target.model: model file not found: models/nope.safetensors``.

A PyTorch source is a file (a ``torch.export`` program, or weights with a ``factory`` or a
reference ``arch``, through :func:`invguard.models.loading.load_user_model`) or a reference model
the caller trains (:func:`torch_target` takes the module); ``normalize`` is applied inside the
target. scikit-learn (skops), ONNX and HTTP sources become black-box targets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from invguard.config_errors import ConfigError
from invguard.config_fields import (
    FACTORY_FIELD_PATTERN,
    HttpSource,
    ModelSource,
    OnnxSource,
    SklearnSource,
    SourceModel,
    TorchSource,
)
from invguard.errors import InvGuardError
from invguard.models.loading import load_user_model
from invguard.targets.base import OutputSpec, Target
from invguard.targets.http import HttpTarget
from invguard.targets.onnx import OnnxTarget
from invguard.targets.pytorch import Normalization, TorchTarget, check_normalize
from invguard.targets.sklearn import SklearnTarget, load_sklearn_model

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ------------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class SourceContext:
    """Where a source is loaded: ``where`` is the field path that prefixes errors
    (``systems[0].target``), ``resolve`` makes a relative path absolute (against the
    configuration's folder), and ``input_shape`` and ``num_classes`` are what the model must take
    and return (None: taken from the model, where it says)."""

    where: str
    resolve: Callable[[Path], Path]
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None

    def error(self, field: str | None, problem: object) -> ConfigError:
        """A :class:`ConfigError` naming ``where.field`` (``where`` alone without a field)."""
        at = f"{self.where}.{field}" if field else self.where
        return ConfigError(f"{at}: {problem}")

    def shape(self) -> tuple[int, ...]:
        if self.input_shape is None:
            raise self.error("input_shape", "required field missing")
        return self.input_shape


@dataclass(frozen=True)
class HttpOptions:
    """Settings of an HTTP target that are not in the shared schema (each config has its own)."""

    concurrency: int = 1
    max_retry_wait: float = 60.0
    transport: Any = None


def expand_headers(headers: Mapping[str, str], where: str) -> dict[str, str]:
    """Replace ``${NAME}`` in header values with environment variables (secrets stay out of
    files); a variable that is not set is a :class:`ConfigError` naming the header."""
    out: dict[str, str] = {}
    for key, value in headers.items():

        def sub(m: re.Match[str], key: str = key) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}.headers.{key}: environment variable {name} is not set")
            return os.environ[name]

        out[key] = _ENV_REF.sub(sub, value)
    return out


def model_file(ctx: SourceContext, path: Path, field: str = "model") -> Path:
    """``path`` resolved; a :class:`ConfigError` naming ``field`` when there is no such file."""
    p = ctx.resolve(path)
    if not p.is_file():
        raise ctx.error(field, f"model file not found: {path}")
    return p


def load_torch_file(source: TorchSource, ctx: SourceContext) -> tuple[nn.Module, dict[str, Any]]:
    """The PyTorch model of a file source (a program, or weights with a factory or an arch) and
    JSON-ready facts about it (``source``, ``file``, ``kind``, ...); the configuration's folder is
    on the import path while a factory is imported."""
    field = source.file_field()
    path = getattr(source, field) if field is not None else None
    if field is None or not isinstance(path, Path):
        raise ctx.error(None, "the source names no model file")
    shape = ctx.shape()
    if len(shape) != 3 or ctx.num_classes is None:
        raise ctx.error(field, "a PyTorch model file needs an image shape and a class count")
    try:
        return load_user_model(
            ctx.resolve(path),
            arch=source.arch,
            factory=source.factory,
            kwargs=source.kwargs or None,
            shape=(shape[0], shape[1], shape[2]),
            num_classes=ctx.num_classes,
            search_path=ctx.resolve(Path(".")),
        )
    except InvGuardError as exc:
        raise ctx.error(field, exc) from exc


def source_normalization(source: TorchSource, ctx: SourceContext) -> Normalization | None:
    """The checked normalisation of a PyTorch source (None without ``normalize``)."""
    pair = source.normalize.pair() if source.normalize is not None else None
    try:
        return check_normalize(pair, ctx.shape()[0])
    except InvGuardError as exc:
        raise ctx.error("normalize", exc) from exc


def torch_target(
    source: TorchSource, model: nn.Module, ctx: SourceContext, *, query_budget: int | None = None
) -> TorchTarget:
    """The white-box target of ``model`` (loaded from ``source``, or a reference model) with the
    source's ``model_output`` and ``normalize``; its outputs are checked against the context."""
    normalize = source_normalization(source, ctx)
    try:
        return TorchTarget(
            model,
            input_shape=ctx.shape(),
            num_classes=ctx.num_classes,
            output=source.model_output,
            normalize=normalize,
            query_budget=query_budget,
        )
    except InvGuardError as exc:
        raise ctx.error(None, exc) from exc


def load_estimator(source: SklearnSource, ctx: SourceContext) -> Any:
    """The scikit-learn estimator of a skops file (loaded without unpickling)."""
    path = model_file(ctx, source.model)
    try:
        return load_sklearn_model(path, trusted=source.trusted)
    except InvGuardError as exc:
        raise ctx.error("model", exc) from exc


def sklearn_target(
    estimator: Any,
    ctx: SourceContext,
    *,
    output: OutputSpec | None = None,
    query_budget: int | None = None,
) -> SklearnTarget:
    """The black-box target of an estimator; ``output`` applies when it has ``predict_proba``
    (an estimator without it answers labels only, whatever ``output`` says)."""
    try:
        full = SklearnTarget(estimator, input_shape=ctx.shape(), num_classes=ctx.num_classes)
        if output is None and query_budget is None:
            return full
        spec = (output or OutputSpec()) if full.output.scores else full.output
        return SklearnTarget(
            estimator,
            input_shape=ctx.shape(),
            num_classes=ctx.num_classes,
            output=spec,
            query_budget=query_budget,
        )
    except InvGuardError as exc:
        raise ctx.error("model", exc) from exc


def onnx_target(
    source: OnnxSource,
    ctx: SourceContext,
    *,
    output: OutputSpec | None = None,
    query_budget: int | None = None,
    threads: int = 1,
) -> OnnxTarget:
    """The black-box target of an ONNX file (``threads``: onnxruntime's intra-op threads)."""
    path = model_file(ctx, source.model)
    try:
        return OnnxTarget(
            path,
            input_shape=ctx.input_shape,
            num_classes=ctx.num_classes,
            model_output=source.model_output,
            output=output or OutputSpec(),
            query_budget=query_budget,
            intra_op_threads=threads,
        )
    except InvGuardError as exc:
        raise ctx.error("model", exc) from exc


def http_target(
    source: HttpSource,
    ctx: SourceContext,
    *,
    output: OutputSpec | None = None,
    query_budget: int | None = None,
    options: HttpOptions = HttpOptions(),
) -> HttpTarget:
    """The black-box target of an endpoint (headers expanded from the environment)."""
    if ctx.num_classes is None:
        raise ctx.error("num_classes", "required field missing")
    headers = expand_headers(source.headers, ctx.where)
    try:
        return HttpTarget(
            source.url,
            num_classes=ctx.num_classes,
            input_shape=ctx.shape(),
            output=output or OutputSpec(),
            headers=headers,
            request_template=source.request_template,
            response_mapping=source.response,
            timeout=source.timeout,
            retries=source.retries,
            max_batch=source.max_batch,
            concurrency=options.concurrency,
            query_budget=query_budget,
            max_retry_wait=options.max_retry_wait,
            transport=options.transport,
        )
    except InvGuardError as exc:
        raise ctx.error(None, exc) from exc


def load_model_source(
    source: ModelSource,
    ctx: SourceContext,
    *,
    output: OutputSpec | None = None,
    query_budget: int | None = None,
    model: nn.Module | None = None,
) -> Target:
    """The target a model source describes. ``model`` is the module of a PyTorch source without a
    file (a reference model, which the caller trains); ``output`` shapes a black-box target's
    answers and ``query_budget`` caps its queries. Errors are one-line :class:`ConfigError`\\ s
    that name the field."""
    if isinstance(source, TorchSource):
        if model is None:
            model, _ = load_torch_file(source, ctx)
        return torch_target(source, model, ctx, query_budget=query_budget)
    if isinstance(source, SklearnSource):
        est = load_estimator(source, ctx)
        return sklearn_target(est, ctx, output=output, query_budget=query_budget)
    if isinstance(source, OnnxSource):
        return onnx_target(source, ctx, output=output, query_budget=query_budget)
    return http_target(source, ctx, output=output, query_budget=query_budget)


__all__ = [
    "FACTORY_FIELD_PATTERN",
    "HttpOptions",
    "HttpSource",
    "ModelSource",
    "OnnxSource",
    "SklearnSource",
    "SourceContext",
    "SourceModel",
    "TorchSource",
    "expand_headers",
    "http_target",
    "load_estimator",
    "load_model_source",
    "load_torch_file",
    "model_file",
    "onnx_target",
    "sklearn_target",
    "source_normalization",
    "torch_target",
]
