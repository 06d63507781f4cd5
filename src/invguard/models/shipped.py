"""Reference weights shipped in the package: the judges of InvGuard's own data sets.

Training the robust evaluation model of the AT&T faces takes minutes on two cores, and every
``demo``, ``init`` and fresh test run would pay for it. So ``scripts/build_shipped_weights.py``
trains those judges once with the recipes of :mod:`invguard.models.zoo` and stores them here, as
safetensors files (no pickle) named by the same cache key that the model cache uses: a file is used
only for exactly the data set, architecture, recipe and seed it was trained on, and a recipe change
gives a new key, so stale weights are never picked up (the model is then trained as before).

``manifest.json`` holds each file's SHA-256; a file that does not match is ignored (with a warning)
and the model is trained instead. Set ``INVGUARD_SHIPPED_WEIGHTS=0`` to ignore the shipped weights
altogether (to reproduce them from scratch). The user's own data sets never match a shipped key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from invguard.models.cache import ModelCache

log = logging.getLogger(__name__)

SHIPPED_ENV = "INVGUARD_SHIPPED_WEIGHTS"
SHIPPED_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"

# (private data set, the attacker's public images or None): the judge panels of InvGuard's own
# protocols, demo and tests, whose evaluation models are shipped
SHIPPED_PANELS: tuple[tuple[str, str | None], ...] = (
    ("att-faces", None),
    ("att-faces-private30", None),
    ("att-faces-private30", "att-faces-public10"),
    ("digits", None),
    ("mnist-0-4", None),
    ("mnist-0-4", "mnist-5-9"),
)


def shipped_enabled() -> bool:
    """False when ``$INVGUARD_SHIPPED_WEIGHTS`` is ``0``, ``false`` or ``no``."""
    return os.environ.get(SHIPPED_ENV, "1").strip().lower() not in ("0", "false", "no")


def read_manifest(root: Path = SHIPPED_DIR) -> dict[str, dict[str, Any]]:
    """The manifest's entries by cache key (empty when there is none)."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    entries: dict[str, dict[str, Any]] = data.get("models", {})
    return entries


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_shipped(
    key: str, root: Path = SHIPPED_DIR
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(state_dict, record)`` of the shipped model ``key``, or None (none shipped, disabled, or
    a file whose SHA-256 differs from the manifest's)."""
    if not shipped_enabled():
        return None
    entry = read_manifest(root).get(key)
    if entry is None:
        return None
    path = ModelCache(root).path(key)
    if not path.is_file() or file_sha256(path) != entry.get("sha256"):
        log.warning("shipped weights %s are missing or damaged; training instead", key[:12])
        return None
    hit = ModelCache(root).load(key)
    if hit is None:
        return None
    state, record = hit
    return state, {**record, "source": "shipped"}
