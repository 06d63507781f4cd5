"""Black-box adapter for a fitted scikit-learn classifier, and safe loading with skops.

Images are flattened to feature vectors (row-major, as ``x.reshape(n, -1)``). Model files are read
with ``skops.io`` only, never ``pickle`` or ``joblib``: a file whose types are not all on the
allowlist (scikit-learn estimators and the few internal types they store, plus what the caller
trusts explicitly) is refused before anything is constructed. See
https://skops.readthedocs.io/en/stable/persistence.html.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, ModelError, TargetError, check_int
from invguard.targets.adapter import BaseTarget
from invguard.targets.base import FULL_PROBABILITIES, OutputSpec

# Types that skops does not trust by default but that plain scikit-learn classifiers store:
# MLP optimiser state, the Cython tree of decision trees and forests, histogram-GBDT predictors.
# skops already trusts every scikit-learn estimator class, numpy arrays and dtypes, and builtins
# such as dict and list.
DEFAULT_TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def save_sklearn_model(estimator: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``estimator`` to ``path`` with ``skops.io.dump`` (no pickle); return the path."""
    import skops.io as sio

    out = Path(path)
    try:
        sio.dump(estimator, out)
    except (TypeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot save the estimator to {out}: {_one_line(exc)}") from exc
    return out


def load_sklearn_model(path: str | os.PathLike[str], *, trusted: Sequence[str] = ()) -> Any:
    """Load a scikit-learn model saved with skops, refusing any type that is not trusted.

    Trusted are the scikit-learn estimator types (and what skops trusts by default),
    :data:`DEFAULT_TRUSTED_TYPES` and the fully qualified type names in ``trusted``. Anything else
    raises :class:`~invguard.errors.ModelError` naming the types, before any object is built.
    """
    import skops.io as sio

    if isinstance(trusted, str):
        raise InvalidParameterError(
            f"The 'trusted' parameter must be a sequence of type names, got the string {trusted!r}"
        )
    src = Path(path)
    if not src.is_file():
        raise ModelError(f"model file {src} does not exist")
    try:
        found = sio.get_untrusted_types(file=src)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, json errors: not a skops file
        raise ModelError(
            f"model file {src} is not a readable skops file: {_one_line(exc)}"
        ) from exc
    allowed = DEFAULT_TRUSTED_TYPES | frozenset(trusted)
    refused = sorted(t for t in found if t not in allowed)
    if refused:
        listed = ", ".join(refused)
        raise ModelError(
            f"model file {src} contains types that are not trusted: {listed}; load it only if "
            f"you trust its source, with load_sklearn_model(path, trusted={refused!r})"
        )
    try:
        return sio.load(src, trusted=sorted(found))
    except Exception as exc:  # skops raises many types for damaged files
        raise ModelError(f"cannot load model file {src}: {_one_line(exc)}") from exc


class SklearnTarget(BaseTarget):
    """Wrap a fitted scikit-learn classifier as a black-box :class:`~invguard.targets.Target`.

    ``predict`` flattens ``(n, *input_shape)`` images to ``(n, features)`` and returns
    ``predict_proba`` mapped to class indices: integer labels in ``classes_`` are the class
    indices themselves (classes never seen in training score 0), other labels are numbered in
    the order of ``classes_``. Without ``predict_proba`` the target exposes labels only (one-hot
    rows). ``output`` restricts the scores further (top-k, rounding, labels only).
    """

    def __init__(
        self,
        estimator: Any,
        *,
        input_shape: tuple[int, ...],
        num_classes: int | None = None,
        output: OutputSpec | None = None,
        batch_size: int = 1024,
        query_budget: int | None = None,
    ) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise TargetError(
                f"the estimator ({type(estimator).__name__}) has no predict method: "
                "a fitted scikit-learn classifier is expected"
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise TargetError(
                f"the estimator ({type(estimator).__name__}) is not fitted or not a classifier: "
                "it has no 'classes_'"
            )
        self._estimator = estimator
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise InvalidParameterError(
                f"The 'input_shape' parameter must be a tuple of ints >= 1, got {input_shape!r}"
            )
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        super().__init__(input_shape=shape, query_budget=query_budget)
        self._has_proba = hasattr(estimator, "predict_proba")
        self._columns, n_classes = self._class_columns(np.asarray(classes), num_classes)
        if output is None:
            output = FULL_PROBABILITIES if self._has_proba else OutputSpec(scores=False)
        if output.scores and not self._has_proba:
            raise TargetError(
                f"the estimator ({type(estimator).__name__}) has no predict_proba, so the target "
                "can only expose labels: use output=OutputSpec(scores=False)"
            )
        self._declare(n_classes, output)
        n_features = getattr(estimator, "n_features_in_", None)
        flat = int(np.prod(self._input_shape))
        if n_features is not None and int(n_features) != flat:
            raise TargetError(
                f"the estimator takes {int(n_features)} features, but input_shape "
                f"{self._input_shape} flattens to {flat}"
            )

    @staticmethod
    def _class_columns(
        classes: np.ndarray, num_classes: int | None
    ) -> tuple[NDArray[np.int64], int]:
        """Column of each entry of ``classes_`` in the ``(n, num_classes)`` output."""
        if classes.ndim != 1 or len(classes) == 0:
            raise TargetError(
                f"the estimator's classes_ must be a non-empty 1-d array, got shape {classes.shape}"
            )
        if np.issubdtype(classes.dtype, np.integer):
            columns = classes.astype(np.int64)
            if columns.min() < 0:
                raise TargetError(
                    f"the estimator's integer classes must be >= 0, got {int(columns.min())}"
                )
            inferred = int(columns.max()) + 1
        else:
            columns = np.arange(len(classes), dtype=np.int64)
            inferred = len(classes)
        if num_classes is None:
            return columns, inferred
        check_int("num_classes", num_classes, minimum=2)
        if num_classes < inferred:
            raise TargetError(
                f"the estimator knows {inferred} classes, but num_classes={num_classes}"
            )
        return columns, num_classes

    @property
    def estimator(self) -> Any:
        return self._estimator

    def _chunk_scores(self, flat: NDArray[np.float32]) -> NDArray[np.float32]:
        out = np.zeros((len(flat), self._num_classes), dtype=np.float32)
        if self.output.scores:
            proba = np.asarray(self._estimator.predict_proba(flat), dtype=np.float32)
            out[:, self._columns] = proba
            return out
        labels = np.asarray(self._estimator.predict(flat))
        classes = self._estimator.classes_.tolist()
        lookup = dict(zip(classes, self._columns.tolist(), strict=True))
        idx = np.fromiter((lookup[v] for v in labels.tolist()), dtype=np.int64, count=len(labels))
        out[np.arange(len(flat)), idx] = 1.0
        return out

    def _scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``predict_proba`` per class index, or the one-hot rows of ``predict`` (labels only:
        these may differ from the arg-max of ``predict_proba``; restricting keeps them)."""
        flat = x.reshape(len(x), -1)
        parts = [
            self._chunk_scores(flat[i : i + self.batch_size])
            for i in range(0, len(flat), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self._num_classes), np.float32)

    def __repr__(self) -> str:
        return (
            f"SklearnTarget({type(self._estimator).__name__}, input_shape={self._input_shape}, "
            f"num_classes={self._num_classes}, output='{self.output.describe()}', "
            f"queries={self.queries})"
        )
