"""Reference tabular models, trained deterministically, and their targets, files and encodings.

Architectures: ``logreg`` (L2 logistic regression, lbfgs), ``tree`` (a fully grown CART tree, the
scikit-learn default: it fits its training rows almost exactly, as the BigML trees of Fredrikson et
al. 2015 did), ``forest`` (100 fully grown trees), ``gbdt`` (histogram gradient boosting, 200
rounds, no early stopping) and ``mlp`` (PyTorch, two ReLU hidden layers, Adam). scikit-learn
models get ``random_state=seed``; the MLP draws its initial weights and batch order from one
``torch.Generator`` seeded with ``seed``; nothing is seeded globally. Fits run single-threaded
(:func:`~invguard.tabular._threads.limit_threads`).

Files: scikit-learn models are saved with skops (never pickle), the MLP as ONNX; the encoding is
saved beside the model as ``<stem>.encoding.json`` so that the model can be assessed later with
the same columns.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.errors import DataError, InvalidParameterError, ModelError, check_choice, check_int
from invguard.tabular._threads import limit_threads
from invguard.tabular.data import TabularEncoder
from invguard.targets.base import Target

TABULAR_ARCHS: tuple[str, ...] = ("logreg", "tree", "forest", "gbdt", "mlp")
MODEL_SUFFIXES: tuple[str, ...] = (".skops", ".onnx")


@dataclass(frozen=True, kw_only=True)
class MLPConfig:
    """Hyper-parameters of the reference MLP."""

    hidden: tuple[int, ...] = (128, 64)
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if not self.hidden or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden
        ):
            raise InvalidParameterError(
                "The 'hidden' parameter must be a non-empty tuple of ints >= 1, "
                f"got {self.hidden!r}"
            )
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)


@dataclass(frozen=True, kw_only=True)
class TrainedTabularModel:
    """A fitted model: a scikit-learn estimator or a ``torch.nn.Module`` returning logits."""

    arch: str
    model: Any
    n_features: int
    num_classes: int
    seconds: float
    seed: int


def build_estimator(arch: str, *, seed: int = 0) -> Any:
    """An unfitted scikit-learn estimator of a reference architecture (not ``mlp``)."""
    check_choice("arch", arch, tuple(a for a in TABULAR_ARCHS if a != "mlp"))
    if arch == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000)
    if arch == "tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(random_state=seed)
    if arch == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, early_stopping=False, random_state=seed)


def _build_mlp(n_features: int, num_classes: int, hidden: tuple[int, ...]) -> Any:
    from torch import nn

    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _train_mlp(
    x: NDArray[np.float32], y: NDArray[np.int64], num_classes: int, cfg: MLPConfig, seed: int
) -> Any:
    import torch
    import torch.nn.functional as F

    from invguard.models.architectures import init_parameters

    gen = torch.Generator().manual_seed(seed)
    model = _build_mlp(x.shape[1], num_classes, cfg.hidden)
    init_parameters(model, gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def train_tabular_model(
    arch: str,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    *,
    num_classes: int | None = None,
    seed: int = 0,
    mlp: MLPConfig | None = None,
) -> TrainedTabularModel:
    """Train a reference model on encoded rows ``x`` and label indices ``y``, deterministically."""
    check_choice("arch", arch, TABULAR_ARCHS)
    check_int("seed", seed, minimum=0)
    xa = np.asarray(x, dtype=np.float32)
    ya = np.asarray(y, dtype=np.int64)
    if xa.ndim != 2 or len(xa) != len(ya) or len(xa) == 0:
        raise InvalidParameterError(
            f"x must be (n, features) and y (n,) with n >= 1, got {xa.shape} and {ya.shape}"
        )
    k = int(num_classes) if num_classes is not None else int(ya.max()) + 1
    start = time.perf_counter()
    with limit_threads(1):
        if arch == "mlp":
            model = _train_mlp(xa, ya, k, mlp or MLPConfig(), seed)
        else:
            model = build_estimator(arch, seed=seed).fit(xa, ya)
    return TrainedTabularModel(
        arch=arch,
        model=model,
        n_features=xa.shape[1],
        num_classes=k,
        seconds=time.perf_counter() - start,
        seed=seed,
    )


def is_torch_model(model: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, nn.Module)


def tabular_target(
    model: Any, *, n_features: int, num_classes: int, query_budget: int | None = None
) -> Target:
    """Wrap a fitted model (scikit-learn or a logit-returning torch module) as a target."""
    if is_torch_model(model):
        from invguard.targets.pytorch import TorchTarget

        return TorchTarget(
            model, input_shape=(n_features,), num_classes=num_classes, query_budget=query_budget
        )
    from invguard.targets.sklearn import SklearnTarget

    fitted = getattr(model, "n_features_in_", None)
    if fitted is not None and int(fitted) != n_features:
        raise DataError(
            f"the model takes {int(fitted)} input features, but the data encode to {n_features}: "
            "it was trained on other columns or another encoding"
        )
    return SklearnTarget(
        model, input_shape=(n_features,), num_classes=num_classes, query_budget=query_budget
    )


def encoding_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the encoding of ``model.skops`` / ``model.onnx`` lives: ``model.encoding.json``."""
    return Path(model_path).with_suffix(".encoding.json")


def save_tabular_model(
    model: Any, path: str | os.PathLike[str], encoder: TabularEncoder
) -> tuple[Path, Path]:
    """Save a model (skops for scikit-learn, ONNX for torch) and its encoding; return both paths."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InvalidParameterError(
            f"model file {out} must end in .skops (scikit-learn) or .onnx (the MLP)"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the folder of {out}: {exc.strerror}") from exc
    if is_torch_model(model):
        if suffix != ".onnx":
            raise InvalidParameterError(f"the MLP is saved as ONNX: use a .onnx path, not {out}")
        from invguard.targets.onnx import export_torch_to_onnx

        export_torch_to_onnx(model, (encoder.n_features,), out)
    else:
        if suffix != ".skops":
            raise InvalidParameterError(
                f"scikit-learn models are saved with skops: use a .skops path, not {out}"
            )
        from invguard.targets.sklearn import save_sklearn_model

        save_sklearn_model(model, out)
    return out, encoder.save(encoding_path(out))


def load_tabular_target(
    path: str | os.PathLike[str],
    *,
    encoder: TabularEncoder,
    query_budget: int | None = None,
) -> Target:
    """Load a ``.skops`` or ``.onnx`` model as a target for rows encoded by ``encoder``."""
    src = Path(path)
    suffix = src.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelError(f"model file {src} must be a .skops or .onnx file")
    if not src.is_file():
        raise ModelError(f"model file {src} does not exist")
    n, k = encoder.n_features, len(encoder.classes)
    if suffix == ".skops":
        from invguard.targets.sklearn import load_sklearn_model

        estimator = load_sklearn_model(src)
        fitted = getattr(estimator, "n_features_in_", None)
        if fitted is not None and int(fitted) != n:
            raise DataError(
                f"model file {src} takes {int(fitted)} input features, but the data encode to "
                f"{n}: it was trained on other columns or another encoding"
            )
        return tabular_target(estimator, n_features=n, num_classes=k, query_budget=query_budget)
    from invguard.errors import TargetError
    from invguard.targets.onnx import OnnxTarget

    try:
        return OnnxTarget(src, input_shape=(n,), num_classes=k, query_budget=query_budget)
    except TargetError as exc:
        if "input_shape" not in str(exc):
            raise
        raise DataError(
            f"{exc}: the data encode to {n} features, so the model was trained on other columns "
            "or another encoding"
        ) from exc
