"""Train the judges of InvGuard's built-in data sets and store them in the package.

    .venv/bin/python scripts/build_shipped_weights.py            # all built-in judge panels
    .venv/bin/python scripts/build_shipped_weights.py --check    # only verify the shipped files

Each panel is built with :func:`invguard.judges.reference_panel`, exactly as ``demo``, ``init``,
``assess`` and the tests build it, in an empty model cache and on one torch thread (as under
``make test``; the README's judge numbers were measured so). Every evaluation model it trains is
copied into ``src/invguard/models/weights/`` under its cache key, and ``manifest.json`` records
each file's SHA-256, recipe and held-out accuracy. ``--check`` re-measures each shipped model's
held-out accuracy and compares it with the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from invguard.data import load_builtin, load_builtin_auxiliary
from invguard.judges import is_face_data, reference_panel
from invguard.judges.open_set import open_set_dataset
from invguard.models import ModelCache, TrainedModel
from invguard.models.shipped import (
    MANIFEST,
    SHIPPED_DIR,
    SHIPPED_ENV,
    SHIPPED_PANELS,
    file_sha256,
    read_manifest,
)
from invguard.models.training import accuracy
from invguard.models.zoo import train_evaluation_model, train_second_evaluation_model


def _records(cache: ModelCache) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((cache.root / "models").glob("*.safetensors")):
        hit = cache.load(path.stem)
        if hit is not None and hit[1].get("role") == "evaluation":
            out[path.stem] = hit[1]
    return out


def build(root: Path) -> dict[str, dict[str, Any]]:
    """Train every panel's evaluation models in a fresh cache; copy them to ``root``."""
    entries: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = ModelCache(tmp)
        for name, public in SHIPPED_PANELS:
            start = time.perf_counter()
            dataset = load_builtin(name)
            aux = load_builtin_auxiliary(public) if public else None
            reference_panel(dataset, cache=cache, public=aux)
            print(f"{name} (public: {public}): {time.perf_counter() - start:.0f} s", flush=True)
        (root / "models").mkdir(parents=True, exist_ok=True)
        for key, record in _records(cache).items():
            shutil.copyfile(cache.path(key), ModelCache(root).path(key))
            entries[key] = {
                "sha256": file_sha256(ModelCache(root).path(key)),
                "dataset": record["dataset"],
                "arch": record["arch"],
                "seed": record["seed"],
                "epochs": record["config"]["epochs"],
                "test_accuracy": record["test_accuracy"],
                "train_seconds": round(float(record["seconds"]), 1),
                "torch": torch.__version__,
            }
    return entries


def check() -> int:
    """Re-measure each shipped model's held-out accuracy against the package's manifest; 0 when
    every panel's evaluation models load from the package and match it."""
    manifest = read_manifest(SHIPPED_DIR)
    wanted = set(manifest)
    found: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:  # empty: every hit must come from the package
        for name, public in SHIPPED_PANELS:
            if not _check_panel(name, public, manifest, ModelCache(tmp), found):
                return 1
    if wanted - found:
        print(f"shipped but unused: {sorted(k[:12] for k in wanted - found)}")
        return 1
    return 0


def _check_panel(
    name: str,
    public: str | None,
    manifest: dict[str, dict[str, Any]],
    cache: ModelCache,
    found: set[str],
) -> bool:
    """Re-measure one panel's shipped models; False on a mismatch."""
    dataset = load_builtin(name)
    if public:
        dataset = open_set_dataset(dataset, load_builtin_auxiliary(public))
    trainers: list[Callable[..., TrainedModel]] = [train_evaluation_model]
    if not is_face_data(dataset):  # faces are judged by the face embedding instead
        trainers.append(train_second_evaluation_model)
    for train in trainers:
        trained = train(dataset, cache=cache)
        if not trained.from_cache or trained.cache_key not in manifest:
            print(f"{dataset.name} {trained.arch}: not shipped (trained now)")
            return False
        found.add(trained.cache_key)
        acc = accuracy(trained.model, dataset.x_test, dataset.y_test)
        shipped = manifest[trained.cache_key]["test_accuracy"]
        ok = abs(acc - shipped) < 1e-9
        print(f"{dataset.name} {trained.arch}: held-out {acc:.4f} (manifest {shipped:.4f})"
              + ("" if ok else "  MISMATCH"))  # fmt: skip
        if not ok:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the shipped files")
    parser.add_argument(
        "--out", type=Path, default=SHIPPED_DIR, help="weights folder to build into"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.check:
        return check()
    os.environ[SHIPPED_ENV] = "0"  # train every model afresh
    if (args.out / "models").exists():
        shutil.rmtree(args.out / "models")
    entries = build(args.out)
    manifest = {"about": "see invguard.models.shipped and scripts/build_shipped_weights.py"}
    text = json.dumps({**manifest, "models": entries}, indent=2, sort_keys=True) + "\n"
    (args.out / MANIFEST).write_text(text, encoding="utf-8")
    print(f"{len(entries)} models written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
