"""Black-box adapter for an ONNX classifier run by ONNX Runtime, and a PyTorch-to-ONNX exporter.

The model may have a dynamic batch dimension (any batch size runs in one call, in chunks of
``batch_size``) or a fixed one (batches are cut to that size and the last one is zero-padded).
References: https://onnxruntime.ai/docs/api/python/api_summary.html and
https://pytorch.org/docs/stable/onnx_torchscript.html.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from invguard.errors import (
    MissingDependencyError,
    ModelError,
    TargetError,
    check_choice,
    check_int,
)
from invguard.targets.adapter import BaseTarget
from invguard.targets.base import FULL_PROBABILITIES, Capability, OutputSpec, check_batch

ModelOutput = Literal["logits", "probabilities"]
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx") from exc
    return onnxruntime


def _softmax(z: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    z64 = z.astype(np.float64)
    z64 -= z64.max(axis=1, keepdims=True)
    e = np.exp(z64)
    out: NDArray[np.float32] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def export_torch_to_onnx(
    model: Any,
    input_shape: tuple[int, ...],
    path: str | os.PathLike[str],
    *,
    opset: int = 17,
    input_name: str = "input",
    output_name: str = "scores",
) -> Path:
    """Export a ``torch.nn.Module`` to ONNX with a dynamic batch axis; return the path.

    Uses the TorchScript-based exporter (``dynamo=False``), which works offline without
    ``onnxscript``. The model is traced in eval mode on a zero batch in its parameters' dtype.
    """
    import torch

    check_int("opset", opset, minimum=7)
    shape = tuple(int(s) for s in input_shape)
    first = next(iter(model.parameters()), None)
    dtype = first.dtype if first is not None else torch.float32
    was_training = model.training
    model.eval()
    out = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                model,
                (torch.zeros((1, *shape), dtype=dtype),),
                str(out),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(exc.name or "onnx", "onnx") from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(
            f"cannot export the model to ONNX for inputs of shape {shape}: {_one_line(exc)}"
        ) from exc
    finally:
        model.train(was_training)
    return out


class OnnxTarget(BaseTarget):
    """Wrap an ONNX classifier (a path or the model's bytes) as a black-box target.

    ``model_output`` says what the graph's output is: ``"logits"`` (softmax is applied) or
    ``"probabilities"``. ``output`` restricts what ``predict`` returns (top-k, rounding, labels
    only). Runs on the CPU provider with ``intra_op_threads`` threads.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        model_output: ModelOutput = "logits",
        output: OutputSpec = FULL_PROBABILITIES,
        output_name: str | None = None,
        intra_op_threads: int = 1,
        batch_size: int = 256,
        query_budget: int | None = None,
    ) -> None:
        ort = _import_onnxruntime()
        check_choice("model_output", model_output, ("logits", "probabilities"))
        check_int("intra_op_threads", intra_op_threads, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self._model_output = model_output
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        source: str | bytes
        if isinstance(model, bytes):
            source, where = model, "the ONNX model bytes"
        else:
            where = f"ONNX model file {Path(model)}"
            if not Path(model).is_file():
                raise ModelError(f"{where} does not exist")
            source = str(model)
        try:
            self._session = ort.InferenceSession(
                source, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"cannot load {where}: {_one_line(exc)}") from exc
        self._where = where
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise TargetError(f"{where} must have exactly one input, it has {len(inputs)}: {names}")
        inp = inputs[0]
        if inp.type not in _FLOAT_TYPES:
            raise TargetError(f"{where}: input '{inp.name}' must be a float tensor, got {inp.type}")
        self._input_name: str = inp.name
        self._input_dtype = _FLOAT_TYPES[inp.type]
        dims = list(inp.shape)
        if not dims:
            raise TargetError(f"{where}: input '{inp.name}' must have a batch dimension")
        self._fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
        shape = self._resolve_input_shape(dims[1:], input_shape)
        super().__init__(input_shape=shape, query_budget=query_budget)
        outputs = [o.name for o in self._session.get_outputs()]
        if output_name is None:
            output_name = outputs[0]
        elif output_name not in outputs:
            raise TargetError(
                f"{where} has no output '{output_name}'; its outputs are {', '.join(outputs)}"
            )
        self._output_name = output_name
        probe = self._run(np.zeros((1, *self._input_shape), dtype=np.float32))
        if probe.ndim != 2:
            raise TargetError(
                f"{where} must return (n, classes) scores, got shape {tuple(probe.shape)}"
            )
        inferred = int(probe.shape[1])
        if num_classes is not None and num_classes != inferred:
            raise TargetError(
                f"{where} returns {inferred} class scores, but num_classes={num_classes}"
            )
        self._declare(inferred, output)

    def _resolve_input_shape(
        self, dims: list[Any], given: tuple[int, ...] | None
    ) -> tuple[int, ...]:
        declared = [d if isinstance(d, int) and d > 0 else None for d in dims]
        if given is None:
            if any(d is None for d in declared):
                raise TargetError(
                    f"{self._where}: input '{self._input_name}' has dynamic dimensions "
                    f"{dims}; pass input_shape"
                )
            return tuple(int(d) for d in declared if d is not None)
        shape = tuple(int(s) for s in given)
        if len(shape) != len(declared) or any(
            d is not None and d != s for d, s in zip(declared, shape, strict=False)
        ):
            raise TargetError(
                f"{self._where}: input '{self._input_name}' has shape (batch, "
                f"{', '.join(str(d) for d in dims)}), which does not fit input_shape {shape}"
            )
        return shape

    def _run(self, x: NDArray[np.float32]) -> NDArray[Any]:
        """Run the graph on ``x`` (any batch size), honouring a fixed batch dimension."""
        step = self._fixed_batch or self.batch_size
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step].astype(self._input_dtype, copy=False)
            n = len(chunk)
            if self._fixed_batch is not None and n < self._fixed_batch:
                pad = np.zeros((self._fixed_batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            try:
                (res,) = self._session.run([self._output_name], {self._input_name: chunk})
            except Exception as exc:  # onnxruntime's own error types
                raise TargetError(f"{self._where} failed on a batch: {_one_line(exc)}") from exc
            outs.append(np.asarray(res)[:n])
        return np.concatenate(outs)

    def _own_capabilities(self) -> frozenset[Capability]:
        if self.output.full and self._model_output == "logits":
            return frozenset({Capability.LOGITS})
        return frozenset()

    @property
    def input_name(self) -> str:
        return self._input_name

    def _raw(self, arr: NDArray[np.float32]) -> NDArray[Any]:
        if len(arr) == 0:
            return np.zeros((0, self._num_classes), dtype=np.float32)
        return self._run(arr)

    def logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The graph's logits ``(n, classes)``; only for full-output targets of a logit graph."""
        if Capability.LOGITS not in self.capabilities:
            raise TargetError(
                f"this target exposes {self.output.describe()} of a graph that returns "
                f"{self._model_output}: logits are not available"
            )
        arr = check_batch(x, self._input_shape)
        self._counter.charge(len(arr))
        return self._raw(arr).astype(np.float32)

    def _scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The graph's probabilities (softmax of its logits, or its output checked)."""
        raw = self._raw(x)
        if self._model_output == "logits":
            probs = _softmax(raw)
        else:
            probs = raw.astype(np.float32)
            if len(probs) and (not np.isfinite(probs).all() or probs.min() < 0):
                raise TargetError(
                    f"{self._where} returned negative or non-finite values with "
                    "model_output='probabilities': does it return logits?"
                )
        return probs

    def __repr__(self) -> str:
        return (
            f"OnnxTarget({self._where}, input='{self._input_name}', input_shape="
            f"{self._input_shape}, num_classes={self._num_classes}, model_output="
            f"'{self._model_output}', output='{self.output.describe()}', queries={self.queries})"
        )
