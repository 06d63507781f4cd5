"""On-disk cache of trained models, keyed by a hash of (data, architecture, hyper-parameters, seed).

Weights are stored with safetensors (no pickle); the training record rides in the file's metadata.
Writes are atomic (temporary file, then rename), so concurrent runs never see half a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
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
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model file {p} is not a PyTorch state dict that can be loaded safely "
            f"(weights_only=True): {first}"
        ) from exc
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
