"""White-box adapter for a PyTorch classifier."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from invguard.errors import TargetError, check_choice, check_int
from invguard.targets.base import (
    FULL_PROBABILITIES,
    Capability,
    OutputSpec,
    QueryCounter,
    check_batch,
)

GradientQuantity = Literal["probability", "log_probability", "logit"]
GRADIENT_QUANTITIES: tuple[str, ...] = ("probability", "log_probability", "logit")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TorchTarget:
    """Wrap a ``torch.nn.Module`` classifier as a white-box :class:`~invguard.targets.Target`.

    ``output`` says whether the module returns logits (default) or probabilities. The module is put
    in eval mode; its parameters are not modified. ``class_gradient`` gives the gradient of the
    chosen per-class quantity with respect to the input, for a whole batch in one backward pass.
    """

    capabilities = frozenset(
        {
            Capability.PROBABILITIES,
            Capability.SCORES,
            Capability.LOGITS,
            Capability.LABELS,
            Capability.GRADIENTS,
        }
    )
    output: OutputSpec = FULL_PROBABILITIES

    def __init__(
        self,
        model: nn.Module,
        *,
        input_shape: tuple[int, ...],
        num_classes: int | None = None,
        output: Literal["logits", "probabilities"] = "logits",
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        query_budget: int | None = None,
    ) -> None:
        check_choice("output", output, ("logits", "probabilities"))
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self._model = model.eval()
        self._output = output
        self.device = torch.device(device)
        self._input_shape = tuple(int(s) for s in input_shape)
        self._counter = QueryCounter(query_budget)
        first = next(iter(self._model.parameters()), None)
        self.dtype = first.dtype if first is not None else torch.float32
        try:
            with torch.no_grad():
                probe = self._model(
                    torch.zeros((1, *self._input_shape), device=self.device, dtype=self.dtype)
                )
        except RuntimeError as exc:
            raise TargetError(
                f"the model does not accept inputs of shape {self._input_shape}: {_one_line(exc)}"
            ) from exc
        if probe.ndim != 2:
            raise TargetError(
                f"the model must return (n, classes) scores, got shape {tuple(probe.shape)}"
            )
        inferred = int(probe.shape[1])
        if num_classes is not None and num_classes != inferred:
            raise TargetError(
                f"the model returns {inferred} class scores, but num_classes={num_classes}"
            )
        self._num_classes = inferred

    @property
    def model(self) -> nn.Module:
        return self._model

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    @property
    def queries(self) -> int:
        return self._counter.count

    @property
    def counter(self) -> QueryCounter:
        return self._counter

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._model(x)
        if self._output == "probabilities":
            out = torch.log(out.clamp_min(1e-30))
        return out

    def logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits of shape ``(n, classes)`` (log-probabilities for probability models)."""
        arr = check_batch(x, self._input_shape)
        self._counter.charge(len(arr))
        outs = []
        with torch.no_grad():
            for i in range(0, len(arr), self.batch_size):
                xb = torch.from_numpy(arr[i : i + self.batch_size]).to(self.device, self.dtype)
                outs.append(self._logits(xb).float().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, self._num_classes), np.float32)

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Softmax probabilities of shape ``(n, classes)``."""
        logits = torch.from_numpy(self.logits(x))
        return torch.softmax(logits, dim=1).numpy()

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
