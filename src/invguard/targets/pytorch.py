"""White-box adapter for a PyTorch classifier."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from invguard.errors import InvalidParameterError, TargetError, check_choice, check_int
from invguard.targets.adapter import BaseTarget
from invguard.targets.base import Capability, check_batch

logger = logging.getLogger(__name__)

GradientQuantity = Literal["probability", "log_probability", "logit"]
OutputKind = Literal["logits", "probabilities", "log_probabilities"]
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probabilities", "log_probabilities")
GRADIENT_QUANTITIES: tuple[str, ...] = ("probability", "log_probability", "logit")


class ShapeMismatchError(InvalidParameterError, TargetError):
    """The model does not fit the declared input shape or class count."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` applied to pixel-space inputs before the model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def describe(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch ``(n, channels, ...)``; differentiable, so gradients reach ``x``."""
        view = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(view)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(view)
        return (x - mean) / std


NormalizeSpec = tuple[Sequence[float], Sequence[float]] | Mapping[str, Sequence[float]]


def _channel_values(
    name: str, value: object, channels: int, *, positive: bool
) -> tuple[float, ...]:
    vals = [value] if isinstance(value, int | float) else value
    if isinstance(vals, str) or not isinstance(vals, Sequence):
        raise InvalidParameterError(
            f"The 'normalize' parameter's {name} must be a number or a sequence of numbers, "
            f"got {type(value).__name__} {value!r}"
        )
    out: list[float] = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidParameterError(
                f"The 'normalize' parameter's {name} must hold finite numbers, got {v!r}"
            )
        if positive and v <= 0:
            raise InvalidParameterError(
                f"The 'normalize' parameter's {name} must be > 0, got {v!r}"
            )
        out.append(float(v))
    if len(out) == 1:
        out *= channels
    if len(out) != channels:
        want = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
        raise InvalidParameterError(
            f"The 'normalize' parameter's {name} must have {want} for inputs with {channels} "
            f"channel{'' if channels == 1 else 's'}, got {len(out)}"
        )
    return tuple(out)


def check_normalize(value: object, channels: int) -> Normalization | None:
    """Validate ``normalize``: ``(mean, std)`` or ``{"mean": ..., "std": ...}``, one value or one
    per channel each, std > 0 (scikit-learn style, a one-line :class:`InvalidParameterError`)."""
    if value is None or isinstance(value, Normalization):
        if isinstance(value, Normalization):
            return check_normalize((value.mean, value.std), channels)
        return None
    if isinstance(value, Mapping):
        if set(value) != {"mean", "std"}:
            raise InvalidParameterError(
                f"The 'normalize' parameter must have keys 'mean' and 'std', got {sorted(value)}"
            )
        pair: object = (value["mean"], value["std"])
    else:
        pair = value
    if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise InvalidParameterError(
            "The 'normalize' parameter must be (mean, std), e.g. ((0.485, 0.456, 0.406), "
            f"(0.229, 0.224, 0.225)), got {value!r}"
        )
    return Normalization(
        _channel_values("mean", pair[0], channels, positive=False),
        _channel_values("std", pair[1], channels, positive=True),
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _expected_input(model: nn.Module, given: tuple[int, ...]) -> str:
    """What the model's first layer expects, when that can be read from it ('' otherwise)."""
    spec = getattr(model, "sample_shape", None)
    if spec:
        return f" (expected {tuple('?' if s is None else s for s in spec)}, given {given})"
    for m in model.modules():
        if isinstance(m, nn.Linear):
            n = int(np.prod(given))
            if m.in_features != n:
                return f" (expected {m.in_features} input values, given {n} = {given})"
            return ""
        if isinstance(m, nn.modules.conv._ConvNd):
            if given and m.in_channels != given[0]:
                return f" (expected {m.in_channels} channels, given {given[0]} in {given})"
            return ""
    return ""


def _looks_like_probabilities(out: torch.Tensor) -> bool:
    """Every row non-negative and summing to 1: a softmax output, not logits."""
    if out.ndim != 2 or out.shape[1] < 2 or not torch.isfinite(out).all():
        return False
    sums = out.double().sum(1)
    return bool((out >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4))


class TorchTarget(BaseTarget):
    """Wrap a ``torch.nn.Module`` classifier as a white-box :class:`~invguard.targets.Target`.

    ``output`` says what the module returns: ``"logits"`` (default), ``"probabilities"`` (it ends in
    softmax) or ``"log_probabilities"`` (it ends in log-softmax); confidences and gradients are
    computed from log-probabilities in every case. A warning is logged when a "logits" model's
    rows are non-negative and sum to 1. One probe forward pass at construction checks
    ``input_shape`` and ``num_classes`` (:class:`ShapeMismatchError`, an
    :class:`~invguard.errors.InvalidParameterError`). The module is put in eval mode; its
    parameters are not modified. ``class_gradient`` gives the gradient of the
    chosen per-class quantity with respect to the input, for a whole batch in one backward pass.

    Inputs are always in pixel space, values in [0, 1]. ``normalize=(mean, std)`` (one value or one
    per channel each, std > 0) is for a model trained on ``(x - mean) / std``: the target applies it
    before the model on every path (``predict``, ``logits``, ``class_gradient``,
    ``differentiable_logits``), so gradients are with respect to the pixels and every attack works
    unchanged in pixel space. :meth:`describe` gives the declared model I/O as JSON-ready facts.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_shape: tuple[int, ...],
        num_classes: int | None = None,
        output: OutputKind = "logits",
        normalize: NormalizeSpec | Normalization | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        query_budget: int | None = None,
    ) -> None:
        check_choice("output", output, OUTPUT_KINDS)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        shape = tuple(int(s) for s in input_shape)
        self._normalize = check_normalize(normalize, shape[0] if shape else 1)
        self._model = model.eval()
        self._output = output
        self.device = torch.device(device)
        super().__init__(input_shape=shape, query_budget=query_budget)
        first = next(iter(self._model.parameters()), None)
        self.dtype = first.dtype if first is not None else torch.float32
        probe = self._probe()
        if probe.ndim != 2:
            raise TargetError(
                f"the model must return (n, classes) scores, got shape {tuple(probe.shape)}"
            )
        inferred = int(probe.shape[1])
        if num_classes is not None and num_classes != inferred:
            raise ShapeMismatchError(
                f"the model returns {inferred} class scores, but num_classes={num_classes} "
                f"(expected {num_classes} classes, given a model with {inferred})"
            )
        self._declare(inferred)
        if output == "logits" and _looks_like_probabilities(probe):
            logger.warning(
                "the model's outputs are non-negative and each row sums to 1: it seems to end in "
                "softmax; pass output='probabilities' so that confidences and gradients are right"
            )

    def _probe(self) -> torch.Tensor:
        """Two forward passes' worth of output (a grey and a mid-grey image), shape-checked."""
        x = torch.stack(
            [
                torch.zeros(self._input_shape, dtype=self.dtype),
                torch.full(self._input_shape, 0.5, dtype=self.dtype),
            ]
        ).to(self.device)
        try:
            with torch.no_grad():
                out: torch.Tensor = self._model(self._prepare(x))
        except (RuntimeError, AssertionError, ValueError, TypeError, IndexError) as exc:
            raise ShapeMismatchError(
                f"the model does not accept inputs of shape {self._input_shape}"
                f"{_expected_input(self._model, self._input_shape)}: {_one_line(exc)}"
            ) from exc
        return out

    @property
    def model(self) -> nn.Module:
        return self._model

    def _own_capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.LOGITS, Capability.GRADIENTS})

    @property
    def output_kind(self) -> str:
        """What the module returns: ``logits``, ``probabilities`` or ``log_probabilities``."""
        return self._output

    @property
    def normalize(self) -> Normalization | None:
        """The ``(x - mean) / std`` applied before the model, or None."""
        return self._normalize

    def describe(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The declared model I/O as JSON-ready facts, for reports: ``input_shape``,
        ``value_range`` (always [0, 1], pixel space), ``output``, ``num_classes``, ``normalize``
        (when set) and ``class_names`` (when given)."""
        facts: dict[str, Any] = {
            "input_shape": list(self._input_shape),
            "value_range": [0.0, 1.0],
            "output": self._output,
            "num_classes": self._num_classes,
        }
        if self._normalize is not None:
            facts["normalize"] = self._normalize.describe()
        if class_names is not None:
            facts["class_names"] = [str(c) for c in class_names]
        return facts

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel-space input to what the model takes (normalised when ``normalize`` is set)."""
        return x if self._normalize is None else self._normalize.apply(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, or log-probabilities (equivalent under softmax) for probability models.

        The one path to the model for every query: ``x`` is in pixel space and is normalised here.
        """
        out: torch.Tensor = self._model(self._prepare(x))
        if self._output == "probabilities":
            out = torch.log(out.clamp_min(1e-30))
        return out

    def logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits of shape ``(n, classes)`` (log-probabilities for probability models)."""
        arr = check_batch(x, self._input_shape)
        self._counter.charge(len(arr))
        return self._batched_logits(arr)

    def _batched_logits(self, arr: NDArray[np.float32]) -> NDArray[np.float32]:
        outs = []
        with torch.no_grad():
            for i in range(0, len(arr), self.batch_size):
                xb = torch.from_numpy(arr[i : i + self.batch_size]).to(self.device, self.dtype)
                outs.append(self._logits(xb).float().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, self._num_classes), np.float32)

    def _scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Softmax probabilities of shape ``(n, classes)``."""
        out: NDArray[np.float32] = torch.softmax(
            torch.from_numpy(self._batched_logits(x)), dim=1
        ).numpy()
        return out

    def differentiable_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a torch batch with the autograd graph kept (counts ``len(x)`` queries).

        For attacks that back-propagate a loss of their own through the model, e.g. into a
        generator's latent space (GMI, PPA). The model's parameters get no gradients.
        """
        if tuple(x.shape[1:]) != self._input_shape:
            raise TargetError(
                f"'x' must have shape (n, {', '.join(map(str, self._input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        self._counter.charge(int(x.shape[0]))
        with torch.enable_grad():
            return self._logits(x.to(self.device, self.dtype))

    def class_gradient(
        self,
        x: torch.Tensor,
        classes: torch.Tensor,
        *,
        quantity: GradientQuantity = "log_probability",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, grad)``: the batch's logits and d quantity[classes] / dx.

        ``quantity`` is the class probability (Fredrikson et al. 2015 minimise ``1 - p``), its log,
        or the raw logit. One forward and one backward pass for the whole batch; counts ``len(x)``
        queries. Inputs and outputs stay on :attr:`device`.
        """
        if quantity not in GRADIENT_QUANTITIES:
            check_choice("quantity", quantity, GRADIENT_QUANTITIES)
        if tuple(x.shape[1:]) != self._input_shape:
            raise TargetError(
                f"'x' must have shape (n, {', '.join(map(str, self._input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if classes.shape != (x.shape[0],):
            raise TargetError(
                f"'classes' must have shape ({x.shape[0]},), got {tuple(classes.shape)}"
            )
        self._counter.charge(int(x.shape[0]))
        with torch.enable_grad():
            xg = x.detach().to(self.dtype).requires_grad_(True)
            logits = self._logits(xg)
            picked_logit = logits.gather(1, classes.view(-1, 1)).squeeze(1)
            if quantity == "logit":
                value = picked_logit
            else:
                value = picked_logit - torch.logsumexp(logits, dim=1)
                if quantity == "probability":
                    value = value.exp()
            (grad,) = torch.autograd.grad(value.sum(), xg)
        return logits.detach().to(x.dtype), grad.to(x.dtype)
