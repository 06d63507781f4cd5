"""On-disk cache of trained models, keyed by a hash of (data, architecture, hyper-parameters, seed).

Weights are stored with safetensors (no pickle); the training record rides in the file's metadata.
Writes are atomic (temporary file, then rename), so concurrent runs never see half a file, and
:func:`locked` lets concurrent processes that need the same model train it once (the others wait
for it, then read it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from invguard.errors import ModelError

CACHE_FORMAT = 1
CACHE_ENV = "INVGUARD_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$INVGUARD_CACHE_DIR`` if set, else ``~/.cache/invguard``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "invguard"


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (dataclasses are expanded)."""

    def enc(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {"__type__": type(o).__name__, **dataclasses.asdict(o)}
        raise TypeError(f"cannot hash {type(o).__name__} into a cache key")

    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=enc)
    return hashlib.sha256(blob.encode()).hexdigest()


class ModelCache:
    """A folder of ``<key>.safetensors`` files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "models" / f"{key}.safetensors"

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """Return ``(state_dict, record)`` for ``key``, or None when absent or unreadable."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            state = load_file(str(path))
            with open(path, "rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
            record = json.loads(header.get("__metadata__", {}).get("record", "{}"))
        except (SafetensorError, OSError, ValueError):
            return None  # a damaged cache entry is retrained, never trusted
        return state, record

    def save(self, key: str, state: dict[str, torch.Tensor], record: dict[str, Any]) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
            save_file(tensors, tmp, metadata={"record": json.dumps(record, sort_keys=True)})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive advisory lock on ``key`` (``models/<key>.lock``, POSIX ``flock``).

        Taken around "load, else train and save", so that two processes sharing the folder
        (parallel test workers, two assessments) train a model once. Where ``fcntl`` is missing
        (Windows) it does nothing: both processes may then train, and the atomic save keeps the
        file whole.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        path = self.path(key).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def locked(cache: ModelCache | None, key: str | None) -> contextlib.AbstractContextManager[None]:
    """``cache.lock(key)``, or a no-op without a cache or a key."""
    if cache is None or key is None:
        return contextlib.nullcontext()
    return cache.lock(key)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a user's weights file safely: ``.safetensors``, or a PyTorch state dict via
    ``torch.load(weights_only=True)``. Anything that is not a mapping of names to tensors is refused.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    if p.suffix == ".safetensors":
        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"model file {p} is not a valid safetensors file: {exc}") from exc
    if _is_torchscript(p):
        raise ModelError(
            f"model file {p} is a TorchScript file (torch.jit.save), which carries pickled code "
            "and is never loaded: save the weights with torch.save(model.state_dict(), path), or "
            "export the model with torch.export.save"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad or unsafe files
        raise ModelError(_unsafe_load_message(p, exc)) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise ModelError(
            f"model file {p} is not a state dict (a mapping of parameter names to tensors); "
            f"got {type(obj).__name__}. Save it with torch.save(model.state_dict(), path)"
        )
    return obj


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            tails = {n.split("/", 1)[-1] for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError):
        return False
    return "constants.pkl" in tails or any(t.startswith("code/") for t in tails)


def _unsafe_load_message(path: Path, exc: BaseException) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused ``path``; torch's own advice to
    load with ``weights_only=False`` is never relayed."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"model file {path} is a pickled Python object (it needs {found.group(1)}), not a "
            "state dict, and InvGuard never unpickles code: save the weights with "
            "torch.save(model.state_dict(), path) or safetensors, or export the whole model "
            "with torch.export.save"
        )
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text.lower():
        reason = "it holds objects other than tensors"
    else:
        lines = text.strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
    return (
        f"model file {path} is not a PyTorch state dict that loads without running code: {reason}"
    )
