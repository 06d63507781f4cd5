"""Reference architectures for target and evaluation models.

Every reference network is a :class:`FeatureClassifier`: ``features`` maps an image batch
``(n, c, h, w)`` to a feature vector (the penultimate layer), ``head`` maps features to logits.

Targets (what a team might deploy, and what the inversion papers attack):

* ``softmax``: multinomial logistic regression on the pixels (Fredrikson et al. 2015, "Softmax").
* ``mlp``: one hidden layer of sigmoid units (Fredrikson et al. 2015 used 3,000; we default to 1,000,
  which reaches the same test accuracy on the faces at a third of the cost).
* ``cnn``: two conv/pool stages and a dense layer.

Evaluation (the independent judge of reconstructions, never attacked):

* ``evalnet``: a residual network with batch normalisation and global average pooling, a different
  family from every target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from invguard.errors import InvalidParameterError

ImageShape = tuple[int, int, int]


class FeatureClassifier(nn.Module):
    """``forward(x) = head(features(x))``; ``features`` is the penultimate representation."""

    def __init__(self, features: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape ``(n, d)``."""
        out: torch.Tensor = self.features(x)
        return out


def _flat_dim(shape: ImageShape) -> int:
    return shape[0] * shape[1] * shape[2]


def softmax_regression(shape: ImageShape, num_classes: int) -> FeatureClassifier:
    return FeatureClassifier(nn.Flatten(), nn.Linear(_flat_dim(shape), num_classes))


def mlp(shape: ImageShape, num_classes: int, hidden: int = 1000) -> FeatureClassifier:
    features = nn.Sequential(nn.Flatten(), nn.Linear(_flat_dim(shape), hidden), nn.Sigmoid())
    return FeatureClassifier(features, nn.Linear(hidden, num_classes))


def small_cnn(shape: ImageShape, num_classes: int, width: int = 32) -> FeatureClassifier:
    c, h, w = shape
    features = nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (h // 4) * (w // 4), 256),
        nn.ReLU(),
    )
    return FeatureClassifier(features, nn.Linear(256, num_classes))


class Standardize(nn.Module):
    """Per-image photometric normalisation (zero mean, unit variance): makes a judge insensitive to
    global brightness and contrast, as face recognition pipelines are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, *([1] * (x.ndim - 1)))
        std = flat.std(1).view(-1, *([1] * (x.ndim - 1)))
        return (x - mean) / (std + 1e-3)


class _ResidualBlock(nn.Module):
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
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.body(x) + self.skip(x))
        return out


def evalnet(
    shape: ImageShape, num_classes: int, width: int = 32, pool_input: int = 1
) -> FeatureClassifier:
    """Residual evaluation network; its 4*width global-average-pooled features serve KNN distance."""
    c = shape[0]
    side = min(shape[1], shape[2]) // pool_input
    stem: list[nn.Module] = [nn.AvgPool2d(pool_input)] if pool_input > 1 else []
    stem += [
        nn.Conv2d(c, width, 3, stride=2 if side >= 32 else 1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    if side >= 80:
        stem.append(nn.MaxPool2d(2))
    features = nn.Sequential(
        Standardize(),
        *stem,
        _ResidualBlock(width, width, 1),
        _ResidualBlock(width, 2 * width, 2),
        _ResidualBlock(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return FeatureClassifier(features, nn.Linear(4 * width, num_classes))


def evalmlp(shape: ImageShape, num_classes: int, hidden: int = 512) -> FeatureClassifier:
    """Second evaluation model for non-face data: a two-layer ReLU MLP on standardised pixels, a
    different family from the residual ``evalnet`` (trained adversarially, see ``models.zoo``)."""
    features = nn.Sequential(
        Standardize(),
        nn.Flatten(),
        nn.Linear(_flat_dim(shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden // 2),
        nn.ReLU(),
    )
    return FeatureClassifier(features, nn.Linear(hidden // 2, num_classes))


Builder = Callable[[ImageShape, int], FeatureClassifier]


@dataclass(frozen=True)
class ArchitectureInfo:
    name: str
    builder: Builder
    role: str  # "target" or "evaluation"
    summary: str
    version: int = 1  # bump when the layers change, so cached weights are not reused
    zero_init: bool = False  # start from all-zero weights (the convention for logistic regression)


ARCHITECTURES: dict[str, ArchitectureInfo] = {
    "softmax": ArchitectureInfo(
        "softmax", softmax_regression, "target", "softmax regression", version=2, zero_init=True
    ),
    "mlp": ArchitectureInfo("mlp", mlp, "target", "MLP, 1000 sigmoid hidden units"),
    "cnn": ArchitectureInfo("cnn", small_cnn, "target", "small CNN, 2 conv stages"),
    "evalnet": ArchitectureInfo(
        "evalnet", evalnet, "evaluation", "residual CNN with BN and GAP", version=2
    ),
    "evalmlp": ArchitectureInfo(
        "evalmlp", evalmlp, "evaluation", "two-layer ReLU MLP on standardised pixels"
    ),
}
TARGET_ARCHITECTURES = tuple(k for k, v in ARCHITECTURES.items() if v.role == "target")


def build_model(
    arch: str, shape: ImageShape, num_classes: int, *, generator: torch.Generator | None = None
) -> FeatureClassifier:
    """Build a reference architecture; with ``generator`` its weights are initialised from it."""
    if arch not in ARCHITECTURES:
        raise InvalidParameterError(
            f"The 'arch' parameter must be one of {', '.join(sorted(ARCHITECTURES))}, got {arch!r}"
        )
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidParameterError(
            f"The 'shape' parameter must be (channels, height, width), got {shape!r}"
        )
    if arch in ("cnn",) and min(shape[1], shape[2]) < 4:
        raise InvalidParameterError(f"architecture 'cnn' needs images of at least 4x4, got {shape}")
    model = ARCHITECTURES[arch].builder(shape, num_classes)
    if ARCHITECTURES[arch].zero_init:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    elif generator is not None:
        init_parameters(model, generator)
    return model


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise linear, conv and batch-norm layers like PyTorch's defaults, from ``generator``.

    PyTorch's layer constructors draw from the global RNG; this keeps the library free of global
    seeding while reproducing the same initialisation distributions.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()


def describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """Empty if ``state`` loads into ``model``; else one line saying what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            extra = ", ".join(unexpected[:3]) + (" ..." if len(unexpected) > 3 else "")
            parts.append(f"unexpected {extra}")
        return "parameter names differ (" + "; ".join(parts) + ")"
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            hint = ""
            if k.endswith("weight") and v.ndim == 2 and state[k].shape[0] == v.shape[0]:
                hint = (
                    f"; the model takes {state[k].shape[1]} input features here, so it was "
                    "trained on another image size"
                )
            elif v.ndim >= 1 and state[k].shape[0] != v.shape[0] and k.startswith("head"):
                hint = f"; the model has {state[k].shape[0]} classes"
            return (
                f"{k} has shape {list(state[k].shape)} in the file but {list(v.shape)} is "
                f"expected{hint}"
            )
    return ""
