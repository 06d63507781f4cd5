"""The user's own model, from a file: one loader for the command line, the assessment config and
the Python API.

Three sources give a white-box (gradient) model:

* a ``torch.export`` program (``.pt2`` from ``torch.export.save``): a graph of tensor operations
  plus raw weights. The archive is checked entry by entry *before* ``torch.export.load`` sees it:
  anything that would be unpickled (pickled weights or constants, compiled AOTInductor code,
  TorchScript, ``torch.save`` objects) is refused, so nothing in the file can run code;
* a factory the user names (``my_pkg.models:build_model`` with keyword arguments) plus weights
  (``.safetensors``, or a state dict read with ``torch.load(weights_only=True)``). Importing the
  factory's module runs the user's own code, by the user's explicit choice;
* an InvGuard reference architecture (``softmax``, ``mlp``, ``cnn``) plus weights.

Formats that can only be loaded by unpickling code are refused with a one-line hint naming the
command that exports the model safely: TorchScript, pickled whole models, joblib/pickle files.
ONNX files are pointed to the black-box ONNX target.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from invguard.errors import InvalidParameterError, ModelError

EXPORT_HINT = (
    "export the model with torch.export.save(torch.export.export(model.eval(), (example_batch,), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2')"
)
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".dill")
_ENV_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------
# recognising a file


def sniff_format(path: Path) -> str:
    """What ``path`` holds, from its name and first bytes (nothing is loaded): one of ``pt2``,
    ``torchscript``, ``torch-pickle``, ``safetensors``, ``onnx``, ``pickle``, ``unknown``."""
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        return "pickle"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
        if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
            return "torchscript"
        if any(t.startswith("models/") and t.endswith(".json") for t in tails):
            return "pt2"
        if "data.pkl" in tails:
            return "torch-pickle"
        return "unknown"
    if head[:1] == b"\x80":  # a pickle protocol opcode: legacy torch.save or plain pickle
        return "torch-pickle"
    if suffix == ".pt2":
        return "pt2"
    return "unknown"


def refuse_unsafe_format(path: Path, kind: str) -> None:
    """Raise a one-line :class:`ModelError` for a format that only unpickling code could load."""
    if kind == "torchscript":
        raise ModelError(
            f"{path} is a TorchScript file (torch.jit.save), which InvGuard does not load because "
            f"it carries pickled code: {EXPORT_HINT}"
        )
    if kind == "pickle":
        raise ModelError(
            f"{path} is a pickle/joblib file, which can run code when loaded and is never opened: "
            "save a scikit-learn model with skops (skops.io.dump(model, 'model.skops'), then "
            f"'type: sklearn'); for a PyTorch model, {EXPORT_HINT}"
        )
    if kind == "onnx":
        raise ModelError(
            f"{path} is an ONNX model: assess it with 'type: onnx' in the assessment config "
            "(ONNX targets are attacked as a black box, from their scores); for a white-box "
            f"attack, {EXPORT_HINT}"
        )


# ------------------------------------------------------------------------------------------------
# torch.export programs


def _pt2_problem(zf: zipfile.ZipFile) -> str:
    """Empty if the archive holds one exported program and raw tensors only; else the reason."""
    names = zf.namelist()
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        return "it is not a torch.export.save archive (entries outside one root folder)"
    root = next(iter(roots)) + "/"
    tails = [n[len(root) :] for n in names]
    if "archive_format" not in tails or "models/model.json" not in tails:
        return "it is not a torch.export.save archive (no archive_format or models/model.json)"
    for t in tails:
        if t.startswith("data/aotinductor/") or t.endswith((".so", ".dll", ".dylib")):
            return f"it contains compiled code ({t}), which InvGuard never loads"
        if t.endswith(".pkl") or t in ("data/weights/model.pt", "data/constants/model.pt"):
            return f"it contains a pickle ({t})"
        if t.startswith("models/") and t != "models/model.json":
            return f"it holds more than one program ({t})"
    for cfg in (
        "data/weights/model_weights_config.json",
        "data/constants/model_constants_config.json",
    ):
        if cfg not in tails:
            return f"it lacks {cfg}"
        try:
            entries = json.loads(zf.read(root + cfg)).get("config", {})
        except (ValueError, AttributeError):
            return f"{cfg} is not valid JSON"
        for fqn, meta in entries.items():
            if not isinstance(meta, dict) or meta.get("use_pickle", True):
                return f"'{fqn}' is stored as a pickle"
            if "constants" in cfg and not str(meta.get("path_name", "")).startswith("tensor_"):
                return f"the constant '{fqn}' is a Python object, not a tensor"
    sample = root + "data/sample_inputs/model.pt"
    if sample in names:
        try:
            torch.load(io.BytesIO(zf.read(sample)), map_location="cpu", weights_only=True)
        except Exception:  # torch raises many types for unsafe or foreign pickles
            return "its sample inputs are not plain tensors"
    return ""


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Force every ``torch.load`` inside to ``weights_only=True`` (defence in depth)."""
    with _ENV_LOCK:
        old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
            else:
                os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


class ExportedModule(nn.Module):
    """A loaded ``torch.export`` program as an ordinary module.

    The program's train/eval behaviour was fixed when it was exported, so :meth:`train` only sets
    the flag. A program exported for one batch size is run in chunks of that size (padded).
    """

    def __init__(
        self,
        graph: nn.Module,
        *,
        fixed_batch: int | None,
        sample_shape: tuple[int | None, ...],
        convolutional: bool,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.fixed_batch = fixed_batch
        self.sample_shape = sample_shape  # None for a dynamic dimension
        self.has_convolutions = convolutional

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.fixed_batch
        if b is None or x.shape[0] == b:
            out: torch.Tensor = self.graph(x)
            return out
        outs = []
        for i in range(0, x.shape[0], b):
            chunk = x[i : i + b]
            n = chunk.shape[0]
            if n < b:
                chunk = torch.cat([chunk, chunk.new_zeros((b - n, *chunk.shape[1:]))])
            outs.append(self.graph(chunk)[:n])
        return torch.cat(outs)


def _input_spec(program: Any) -> tuple[int | None, tuple[int | None, ...]]:
    """The program's batch size (None if dynamic) and per-sample shape (None for dynamic dims)."""
    names = list(program.graph_signature.user_inputs)
    if len(names) != 1:
        raise ModelError(f"the program takes {len(names)} inputs; a classifier takes one batch")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])
    val = node.meta.get("val")
    dims = tuple(d if isinstance(d, int) else None for d in val.shape) if val is not None else ()
    if not dims:
        return None, ()
    return dims[0], dims[1:]


def load_exported_program(path: str | Path) -> ExportedModule:
    """Load a ``torch.export.save`` archive without unpickling anything untrusted."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    kind = sniff_format(p)
    refuse_unsafe_format(p, kind)
    if kind == "torch-pickle":
        raise ModelError(f"{p} is a torch.save pickle, not a torch.export program: {EXPORT_HINT}")
    try:
        with zipfile.ZipFile(p) as zf:
            problem = _pt2_problem(zf)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{p} is not a torch.export program (not a zip archive): {exc}") from exc
    if problem:
        raise ModelError(f"{p} is refused: {problem}; {EXPORT_HINT}")
    try:
        with _weights_only_loads():
            program: Any = torch.export.load(str(p))
    except Exception as exc:  # torch.export raises many types for foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{p} is not a loadable torch.export program: {first}") from exc
    batch, sample = _input_spec(program)
    conv = any("conv" in str(n.target) for n in program.graph.nodes if n.op == "call_function")
    return ExportedModule(
        program.module(), fixed_batch=batch, sample_shape=sample, convolutional=conv
    )


# ------------------------------------------------------------------------------------------------
# factories and weights


def import_factory(spec: str, search_path: Path | None = None) -> Any:
    """The callable named ``package.module:function`` (imports the user's own module)."""
    if not isinstance(spec, str) or not FACTORY_PATTERN.match(spec):
        raise InvalidParameterError(
            f"The 'factory' parameter must look like 'my_pkg.models:build_model', got {spec!r}"
        )
    module_name, attr = spec.split(":")
    added = search_path is not None and str(search_path) not in sys.path
    if added:
        sys.path.insert(0, str(search_path))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"cannot import the factory's module '{module_name}' ({exc}): install your package "
            "or put its folder on PYTHONPATH"
        ) from exc
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(search_path))
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ModelError(f"module '{module_name}' has no function '{attr}' (factory {spec!r})")
    return fn


def _fit_weights(
    model: nn.Module, path: Path, what: str, shape: tuple[int, int, int], k: int
) -> None:
    from invguard.models.architectures import describe_mismatch
    from invguard.models.cache import load_state_dict_file

    state = load_state_dict_file(path)
    problem = describe_mismatch(model, state)
    if problem:
        c, h, w = shape
        raise ModelError(
            f"model file {path} does not fit {what} for {c}x{h}x{w} inputs ({w}x{h} images) "
            f"and {k} classes: {problem}"
        )
    model.load_state_dict(state)


def _build_from_factory(spec: str, kwargs: dict[str, Any], search_path: Path | None) -> nn.Module:
    fn = import_factory(spec, search_path)
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise ModelError(f"factory {spec!r} cannot be called with kwargs {kwargs}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _weights_only_hint(path: Path, kind: str) -> None:
    """A bare state dict (or a pickled model) given without an architecture."""
    from invguard.models.cache import load_state_dict_file

    if kind in ("torch-pickle", "unknown"):
        load_state_dict_file(path)  # raises for pickled whole models and foreign files
    raise ModelError(
        f"{path} holds weights only: name the model they belong to (a factory of your own "
        "code, --factory / factory: 'my_pkg.models:build_model', or a reference --arch / arch:), "
        f"or {EXPORT_HINT}"
    )


def load_user_model(
    path: str | Path,
    *,
    arch: str | None = None,
    factory: str | None = None,
    kwargs: dict[str, Any] | None = None,
    shape: tuple[int, int, int],
    num_classes: int,
    search_path: str | Path | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The user's model in eval mode, and JSON-ready facts about where it came from.

    ``path`` is a ``torch.export`` program (``.pt2``, no ``arch`` or ``factory``), or weights for
    ``arch`` (a reference architecture) or for ``factory`` (``"pkg.module:function"``, called with
    ``kwargs``; ``search_path`` is put on ``sys.path`` while it is imported).
    """
    p = Path(path)
    if arch is not None and factory is not None:
        raise InvalidParameterError("give either 'arch' or 'factory', not both")
    if kwargs and factory is None:
        raise InvalidParameterError("'kwargs' apply to a 'factory' only")
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    kind = sniff_format(p)
    refuse_unsafe_format(p, kind)
    info: dict[str, Any] = {"source": str(p), "file": p.name}
    model: nn.Module
    if kind == "pt2" or p.suffix.lower() == ".pt2":
        if arch is not None or factory is not None:
            raise InvalidParameterError(
                f"{p} is a torch.export program, which carries its architecture: drop arch/factory"
            )
        program = load_exported_program(p)
        check_program_input(program, p, shape)
        check_inference_mode(program, p, shape)
        model = program
        info["kind"] = "torch.export program"
    elif factory is not None:
        model = _build_from_factory(
            factory, dict(kwargs or {}), Path(search_path) if search_path else None
        )
        _fit_weights(model, p, f"factory {factory!r}", shape, num_classes)
        info.update(kind="factory + weights", factory=factory, kwargs=dict(kwargs or {}))
    elif arch is not None:
        from invguard.models.architectures import build_model

        model = build_model(arch, shape, num_classes)
        _fit_weights(model, p, f"architecture '{arch}'", shape, num_classes)
        info.update(kind="reference architecture + weights", arch=arch)
    else:
        _weights_only_hint(p, kind)
        raise AssertionError("unreachable")  # pragma: no cover
    model.eval()
    return model, info


def check_program_input(model: ExportedModule, path: Path, shape: tuple[int, int, int]) -> None:
    """A one-line error when an exported program's fixed input dims differ from ``shape``."""
    spec = model.sample_shape
    if not spec:
        return
    fits = len(spec) == len(shape) and all(
        s is None or s == g for s, g in zip(spec, shape, strict=False)
    )
    if not fits:
        want = ", ".join("?" if s is None else str(s) for s in spec)
        raise InvalidParameterError(
            f"{path} expects inputs of shape (n, {want}), but the data's images have shape "
            f"{tuple(shape)}: give the data the model was trained on"
        )


def check_inference_mode(model: nn.Module, path: Path, shape: tuple[int, int, int]) -> None:
    """A one-line error when a program was exported in training mode: dropout makes two passes
    over the same images differ, and batch-norm batch statistics make one image's scores depend
    on the rest of the batch."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((4, *shape), generator=gen)
    try:
        with torch.no_grad():
            first, again, alone = model(x), model(x), model(x[:1])
    except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise InvalidParameterError(
            f"{path} does not accept a batch of images of shape {tuple(shape)}: {reason}"
        ) from exc
    if not isinstance(first, torch.Tensor) or first.ndim != 2:
        return  # the target's own checks name the problem
    tol = 1e-4 * (1.0 + float(first.abs().max()))
    if not torch.allclose(first, again, atol=tol) or not torch.allclose(first[:1], alone, atol=tol):
        raise ModelError(
            f"{path} was exported in training mode (dropout or batch statistics are active): "
            "call model.eval() before torch.export.export"
        )
