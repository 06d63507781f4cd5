"""A zoo of face classifiers that nobody tuned MI-FACE on (``benchmarks/zoo_miface.py``).

Twelve targets that differ in architecture (softmax regression, MLPs of several widths and
activations, two CNNs, a small ResNet) and in training recipe (weight decay, dropout, augmentation,
epochs). Every model is built and trained deterministically from an explicit ``torch.Generator``
(initialisation, minibatch order, dropout masks and augmentation; no global seeding) with Adam on
minibatches of the private training images, and cached as safetensors under ``<cache>/zoo`` keyed
by a hash of its name, architecture, recipe and the data, so a second run does not retrain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from invguard.data import ImageDataset
from invguard.models import AugmentConfig, init_parameters
from invguard.models.training import augment_batch

ZOO_VERSION = (
    1  # bump when a builder or the training loop changes, so cached weights are not reused
)
Family = Literal["linear", "mlp", "conv"]
Split = Literal["tune", "held-out"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How a zoo model is trained (Adam on minibatches, cosine learning-rate decay)."""

    epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    augment: AugmentConfig | None = None
    batch_size: int = 32

    def describe(self) -> str:
        parts = [f"{self.epochs} ep", f"lr {self.lr:g}"]
        if self.weight_decay:
            parts.append(f"wd {self.weight_decay:g}")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        if self.augment is not None:
            parts.append("aug")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class ZooSpec:
    """One zoo member: architecture, recipe, seed and the half of the zoo it belongs to."""

    name: str
    family: Family
    arch: Literal["softmax", "mlp", "cnn_a", "cnn_b", "resnet"]
    recipe: Recipe
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    width: int = 16
    seed: int = 0

    def describe(self) -> str:
        if self.arch == "softmax":
            return "softmax regression"
        if self.arch == "mlp":
            return f"MLP {'x'.join(map(str, self.hidden))} {self.activation}"
        if self.arch == "cnn_a":
            return f"CNN A (2 conv stages, max pool, width {self.width})"
        if self.arch == "cnn_b":
            return f"CNN B (3 conv stages, BN, width {self.width})"
        return f"ResNet (3 residual blocks, BN, GAP, width {self.width})"


AUG = AugmentConfig()
ZOO: tuple[ZooSpec, ...] = (
    ZooSpec(name="softmax", family="linear", arch="softmax", recipe=Recipe(epochs=100)),
    ZooSpec(
        name="softmax-wd",
        family="linear",
        arch="softmax",
        recipe=Recipe(epochs=60, lr=2e-3, weight_decay=1e-3),
    ),
    ZooSpec(name="mlp256-relu", family="mlp", arch="mlp", hidden=(256,), recipe=Recipe(epochs=40)),
    ZooSpec(
        name="mlp1000-sigmoid-dropout",
        family="mlp",
        arch="mlp",
        hidden=(1000,),
        activation="sigmoid",
        recipe=Recipe(epochs=60, dropout=0.3),
    ),
    ZooSpec(
        name="mlp512x2-gelu",
        family="mlp",
        arch="mlp",
        hidden=(512, 512),
        activation="gelu",
        recipe=Recipe(epochs=50, weight_decay=1e-4),
    ),
    ZooSpec(
        name="mlp3000-tanh",
        family="mlp",
        arch="mlp",
        hidden=(3000,),
        activation="tanh",
        recipe=Recipe(epochs=30, lr=5e-4),
    ),
    ZooSpec(
        name="mlp1000-sigmoid-aug",
        family="mlp",
        arch="mlp",
        hidden=(1000,),
        activation="sigmoid",
        recipe=Recipe(epochs=80, augment=AUG),
    ),
    ZooSpec(
        name="mlp128x2-silu-dropout",
        family="mlp",
        arch="mlp",
        hidden=(128, 128),
        activation="silu",
        recipe=Recipe(epochs=60, weight_decay=1e-4, dropout=0.2),
    ),
    ZooSpec(name="cnn-a", family="conv", arch="cnn_a", recipe=Recipe(epochs=30)),
    ZooSpec(
        name="cnn-b-aug-dropout",
        family="conv",
        arch="cnn_b",
        recipe=Recipe(epochs=60, dropout=0.3, augment=AUG),
    ),
    ZooSpec(
        name="cnn-b-wd",
        family="conv",
        arch="cnn_b",
        recipe=Recipe(epochs=25, weight_decay=5e-4),
    ),
    ZooSpec(
        name="resnet-aug",
        family="conv",
        arch="resnet",
        recipe=Recipe(epochs=40, weight_decay=5e-4, augment=AUG),
    ),
)
QUICK = ("softmax", "mlp1000-sigmoid-dropout", "cnn-a")


def split_of(index: int) -> Split:
    """Deterministic interleaved split: even positions of :data:`ZOO` tune, odd ones are held out.

    :data:`ZOO` lists the families in pairs, so both halves hold linear, MLP and conv models.
    """
    return "tune" if index % 2 == 0 else "held-out"


class GeneratorDropout(nn.Module):
    """Dropout whose masks come from an explicit generator (``nn.Dropout`` uses the global RNG)."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip: nn.Module = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def _mlp_layers(spec: ZooSpec, inputs: int, drop: list[nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in spec.hidden:
        layers += [nn.Linear(inputs, h), ACTIVATIONS[spec.activation](), *drop]
        inputs = h
    return layers


def build(
    spec: ZooSpec, shape: tuple[int, int, int], num_classes: int, generator: torch.Generator
) -> nn.Module:
    """The network of ``spec``, its weights initialised from ``generator``."""
    c, h, w = shape
    w1 = spec.width
    p = spec.recipe.dropout

    def drop() -> list[nn.Module]:
        return [GeneratorDropout(p, generator)] if p > 0 else []

    layers: list[nn.Module]
    if spec.arch == "softmax":
        layers = [nn.Flatten(), nn.Linear(c * h * w, num_classes)]
    elif spec.arch == "mlp":
        layers = [*_mlp_layers(spec, c * h * w, drop()), nn.Linear(spec.hidden[-1], num_classes)]
    elif spec.arch == "cnn_a":
        layers = [
            *(nn.Conv2d(c, w1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            *(nn.Conv2d(w1, 2 * w1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            *(nn.Flatten(), nn.Linear(2 * w1 * (h // 4) * (w // 4), 256), nn.ReLU(), *drop()),
            nn.Linear(256, num_classes),
        ]
    elif spec.arch == "cnn_b":
        layers = []
        cin = c
        for k in (1, 2, 4):
            layers += [nn.Conv2d(cin, k * w1, 3, padding=1, bias=False), nn.BatchNorm2d(k * w1)]
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            cin = k * w1
        flat = 4 * w1 * (h // 8) * (w // 8)
        layers += [nn.Flatten(), *drop(), nn.Linear(flat, 128), nn.ReLU(), *drop()]
        layers.append(nn.Linear(128, num_classes))
    else:
        layers = [
            *(nn.Conv2d(c, w1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU()),
            ResidualBlock(w1, w1, 1),
            ResidualBlock(w1, 2 * w1, 2),
            ResidualBlock(2 * w1, 4 * w1, 2),
            *(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w1, num_classes)),
        ]
    model = nn.Sequential(*layers)
    init_parameters(model, generator)
    return model


@dataclass
class ZooModel:
    """A trained zoo member and what was measured while training it."""

    spec: ZooSpec
    split: Split
    model: nn.Module
    train_accuracy: float
    test_accuracy: float
    seconds: float
    key: str
    from_cache: bool

    def record(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "split": self.split,
            "family": self.spec.family,
            "architecture": self.spec.describe(),
            "recipe": self.spec.recipe.describe(),
            "spec": dataclasses.asdict(self.spec),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "train_seconds": self.seconds,
            "from_cache": self.from_cache,
            "cache_key": self.key,
        }


def zoo_key(spec: ZooSpec, dataset: ImageDataset) -> str:
    """SHA-256 of the spec (name, architecture, recipe, seed), the data and :data:`ZOO_VERSION`."""
    blob = json.dumps(
        {"zoo": ZOO_VERSION, "spec": dataclasses.asdict(spec), "data": dataset.fingerprint()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    pred = model(torch.from_numpy(np.ascontiguousarray(x))).argmax(1).numpy()
    return float((pred == y).mean())


def fit(spec: ZooSpec, dataset: ImageDataset) -> nn.Module:
    """Train ``spec`` on the private training images; deterministic from ``spec.seed``."""
    gen = torch.Generator().manual_seed(spec.seed)
    shape = (int(dataset.image_shape[0]), int(dataset.image_shape[1]), int(dataset.image_shape[2]))
    model = build(spec, shape, dataset.num_classes, gen)
    r = spec.recipe
    opt = torch.optim.Adam(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    xt = torch.from_numpy(np.ascontiguousarray(dataset.x_train))
    yt = torch.from_numpy(np.ascontiguousarray(dataset.y_train)).long()
    n = len(yt)
    total = r.epochs * math.ceil(n / r.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    model.train()
    for _ in range(r.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, r.batch_size):
            idx = perm[i : i + r.batch_size]
            xb = xt[idx] if r.augment is None else augment_batch(xt[idx], r.augment, gen)
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
    return model.eval()


def _save(path: Path, model: nn.Module, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp, metadata={"record": json.dumps(record, sort_keys=True)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path, model: nn.Module) -> dict[str, Any] | None:
    """Load cached weights into ``model``; the stored record, or None when absent or unusable."""
    if not path.is_file():
        return None
    try:
        model.load_state_dict(load_file(str(path)))
        with open(path, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        record: dict[str, Any] = json.loads(header["__metadata__"]["record"])
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError):
        return None  # a damaged or stale entry is retrained, never trusted
    return record


def get_model(spec: ZooSpec, split: Split, dataset: ImageDataset, root: Path) -> ZooModel:
    """The trained model of ``spec`` from ``root`` (``<cache>/zoo``), training it on a miss."""
    key = zoo_key(spec, dataset)
    path = root / f"{spec.name}-{key[:16]}.safetensors"
    shape = (int(dataset.image_shape[0]), int(dataset.image_shape[1]), int(dataset.image_shape[2]))
    model = build(spec, shape, dataset.num_classes, torch.Generator().manual_seed(spec.seed))
    record = _load(path, model)
    from_cache = record is not None
    if record is None:
        started = time.perf_counter()
        model = fit(spec, dataset)
        record = {
            "key": key,
            "seconds": time.perf_counter() - started,
            "train_accuracy": accuracy(model, dataset.x_train, dataset.y_train),
            "test_accuracy": accuracy(model, dataset.x_test, dataset.y_test),
        }
        _save(path, model, record)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return ZooModel(
        spec=spec,
        split=split,
        model=model,
        train_accuracy=float(record["train_accuracy"]),
        test_accuracy=float(record["test_accuracy"]),
        seconds=float(record["seconds"]),
        key=key,
        from_cache=from_cache,
    )


def conv_models(
    dataset: ImageDataset, root: Path, names: tuple[str, ...] | None = None
) -> Iterator[ZooModel]:
    """The zoo's convolutional members (only ``names`` if given), trained or loaded from ``root``,
    each with its tune / held-out split."""
    for index, spec in enumerate(ZOO):
        if spec.family == "conv" and (names is None or spec.name in names):
            yield get_model(spec, split_of(index), dataset, root)
