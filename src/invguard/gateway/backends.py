"""The model behind the gateway: a :class:`Backend` built from the configured model source.

Sources are loaded by the shared loader (:mod:`invguard.models.sources`, as the assessment
loads its targets); errors are one-line :class:`GatewayConfigError`\\ s that name the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import torch
from numpy.typing import NDArray

from invguard.config_errors import ConfigError
from invguard.data import load_builtin
from invguard.errors import InvGuardError
from invguard.gateway.config import (
    GatewayConfigError,
    LoadedGatewayConfig,
    OnnxModel,
    PytorchModel,
    SklearnModel,
    UpstreamModel,
)
from invguard.models import ModelCache, default_cache_dir, train_target
from invguard.models.sources import (
    HttpOptions,
    SourceContext,
    http_target,
    load_estimator,
    load_torch_file,
    onnx_target,
    sklearn_target,
    torch_target,
)
from invguard.targets.http import redact_url

FloatArray = NDArray[np.float32]


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


def load_backend(loaded: LoadedGatewayConfig) -> Backend:
    """Load the configured model (or connect the upstream); errors name the config field."""
    cfg = loaded.config.model
    where = loaded.where("model")
    try:
        if isinstance(cfg, PytorchModel):
            return _torch_backend(cfg, loaded, where)
        ctx = _context(cfg.input_shape, cfg.num_classes, loaded, where)
        if isinstance(cfg, SklearnModel):
            return _sklearn_backend(cfg, ctx)
        if isinstance(cfg, OnnxModel):
            target = onnx_target(cfg, ctx, threads=cfg.threads)
            desc = f"ONNX {loaded.resolve(cfg.model).name}"
            return Backend(target.predict, target.input_shape, target.num_classes, desc)
        return _upstream_backend(cfg, ctx)
    except GatewayConfigError:
        raise
    except ConfigError as exc:  # the shared loader's, already naming the field
        raise GatewayConfigError(str(exc)) from exc
    except InvGuardError as exc:
        field = "url" if isinstance(cfg, UpstreamModel) else "model"
        raise GatewayConfigError(f"{where}.{field}: {exc}") from exc


def _context(
    shape: tuple[int, ...] | None, classes: int | None, loaded: LoadedGatewayConfig, where: str
) -> SourceContext:
    return SourceContext(where, loaded.resolve, None if shape is None else tuple(shape), classes)


def check_shape(
    where: str, cfg_shape: tuple[int, ...] | None, cfg_classes: int | None, shape: Any, classes: int
) -> None:
    """The configured ``input_shape`` and ``num_classes``, where given, are the model's."""
    if cfg_shape is not None and tuple(cfg_shape) != tuple(shape):
        raise GatewayConfigError(
            f"{where}.input_shape: the model takes inputs of shape {list(shape)}, "
            f"not {list(cfg_shape)}"
        )
    if cfg_classes is not None and cfg_classes != classes:
        raise GatewayConfigError(
            f"{where}.num_classes: the model has {classes} classes, not {cfg_classes}"
        )


def _torch_backend(cfg: PytorchModel, loaded: LoadedGatewayConfig, where: str) -> Backend:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    model: torch.nn.Module
    if cfg.reference is not None:
        ref = cfg.reference
        dataset = load_builtin(ref.data)
        check_shape(
            where, cfg.input_shape, cfg.num_classes, dataset.image_shape, dataset.num_classes
        )
        ctx = _context(dataset.image_shape, dataset.num_classes, loaded, where)
        cache = ModelCache(default_cache_dir())
        model = train_target(dataset, ref.arch, seed=ref.seed, cache=cache).model
        desc = f"InvGuard reference {ref.arch} on {ref.data} (seed {ref.seed})"
    else:
        assert cfg.model is not None
        ctx = _context(cfg.input_shape, cfg.num_classes, loaded, where)
        model, info = load_torch_file(cfg, ctx)
        name = loaded.resolve(cfg.model).name
        desc = f"PyTorch {cfg.arch or cfg.factory or info['kind']} from {name}"
    # checks the model's output (shape, class count; a softmax under "logits" is logged)
    target = torch_target(cfg, model, ctx)
    return Backend(
        _serving_predict(target.model, cfg.model_output, target.normalize),
        target.input_shape,
        target.num_classes,
        desc,
    )


def _serving_predict(
    model: torch.nn.Module, kind: str, norm: Any
) -> Callable[[FloatArray], FloatArray]:
    """Probabilities of ``model`` on pixel inputs: no query counting, no copies."""
    model.eval()

    def predict(x: FloatArray) -> FloatArray:
        with torch.inference_mode():
            xt = torch.from_numpy(x)  # pixel space [0, 1]; normalised here when declared
            raw = model(xt if norm is None else norm.apply(xt))
            if kind == "probabilities":
                probs = raw
            elif kind == "log_probabilities":
                probs = raw.exp()
            else:
                probs = torch.softmax(raw, dim=1)
            out: FloatArray = probs.numpy()
        return out

    return predict


def _sklearn_backend(cfg: SklearnModel, ctx: SourceContext) -> Backend:
    est = load_estimator(cfg, ctx)
    target = sklearn_target(est, ctx)
    if not target.output.scores:
        raise GatewayConfigError(
            f"{ctx.where}.model: the estimator ({type(est).__name__}) has no predict_proba; the "
            "gateway needs class probabilities for its output policy and detectors"
        )
    name = ctx.resolve(cfg.model).name
    desc = f"scikit-learn {type(est).__name__} from {name}"
    return Backend(target.predict, target.input_shape, target.num_classes, desc)


def _upstream_backend(cfg: UpstreamModel, ctx: SourceContext) -> Backend:
    limits = httpx.Limits(
        max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections
    )
    options = HttpOptions(
        max_retry_wait=min(cfg.timeout, 5.0), transport=httpx.HTTPTransport(limits=limits)
    )
    target = http_target(cfg, ctx, options=options)
    return Backend(
        target.predict,
        target.input_shape,
        target.num_classes,
        f"upstream {redact_url(cfg.url)}",
        threaded=True,
        close=target.close,
    )


__all__ = ["Backend", "check_shape", "load_backend"]
