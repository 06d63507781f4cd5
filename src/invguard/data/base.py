"""The image data set container shared by every part of InvGuard."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.errors import DataError

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]

DEFAULT_TEST_FRACTION = 0.25


def _images_from_array(field_name: str, x: Any) -> FloatArray:
    """``x`` as float32 ``(n, c, h, w)`` in [0, 1], from the layouts and dtypes users have."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{field_name} must be a numpy array of images: {exc}") from exc
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataError(
            f"{field_name} must hold numbers (uint8 0-255 or float in [0, 1]), got dtype "
            f"{arr.dtype}"
        )
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[3] in (1, 3) and arr.shape[1] not in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)  # channels-last (n, h, w, c)
    else:
        raise DataError(
            f"{field_name} must have shape (n, h, w), (n, c, h, w) or (n, h, w, c), got "
            f"{arr.shape} ({arr.ndim} dimensions)"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{field_name} holds no images (shape {arr.shape})")
    if min(arr.shape[1:]) == 0:
        raise DataError(f"{field_name} has an empty image dimension (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{field_name} is an integer array, read as 0-255 pixel values, but its values "
                f"run from {lo} to {hi}"
            )
        out: FloatArray = np.ascontiguousarray(arr, dtype=np.float32) / np.float32(255.0)
        return out
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinite"
        raise DataError(f"{field_name} contains {bad} values")
    lo_f, hi_f = float(arr.min()), float(arr.max())
    if lo_f < 0.0 or hi_f > 1.0:
        hint = " (divide 0-255 pixel values by 255)" if lo_f >= 0.0 and hi_f <= 255.0 else ""
        raise DataError(
            f"{field_name} is a float array, so its values must lie in [0, 1], but they run from "
            f"{lo_f:g} to {hi_f:g}{hint}"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def _labels_from_array(field_name: str, y: Any, n: int, images: str) -> IntArray:
    """``y`` as int64 of shape ``(n,)``; integral float labels are accepted."""
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{field_name} must be an array of class labels: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(
            f"{field_name} must be one integer class label per image, shape ({n},), got shape "
            f"{arr.shape}" + (" (one-hot labels? use y.argmax(1))" if arr.ndim == 2 else "")
        )
    if arr.shape[0] != n:
        raise DataError(f"{field_name} has {arr.shape[0]} labels but {images} has {n} images")
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise DataError(
                f"{field_name} must hold integer class labels 0..k-1, got non-integer values "
                f"(dtype {arr.dtype})"
            )
    elif arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{field_name} must hold integer class labels 0..k-1, got dtype {arr.dtype} (map "
            "names to 0..k-1 and give them as class_names)"
        )
    out: IntArray = arr.astype(np.int64)
    return out


def _stratified_split(y: IntArray, test_fraction: float, seed: int) -> tuple[IntArray, IntArray]:
    """Sorted train and test indices: ``test_fraction`` of each class held out (at least one)."""
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        if len(members) < 2:
            raise DataError(
                f"y_train: class {int(cls)} has {len(members)} image, too few to hold one out for "
                "testing (give at least 2 per class, or pass x_test and y_test)"
            )
        k = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        order = rng.permutation(members)
        test_idx.extend(int(i) for i in order[:k])
        train_idx.extend(int(i) for i in order[k:])
    return np.sort(np.asarray(train_idx, np.int64)), np.sort(np.asarray(test_idx, np.int64))


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images as float32 arrays of shape ``(n, channels, height, width)`` with values in [0, 1].

    ``x_train``/``y_train`` are the private training images of the target model; ``x_test``/``y_test``
    are held out. ``class_names[i]`` names class ``i``.
    """

    name: str
    x_train: FloatArray
    y_train: IntArray
    x_test: FloatArray
    y_test: IntArray
    class_names: tuple[str, ...]
    description: str = ""
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.ndim != 4:
                raise DataError(
                    f"dataset '{self.name}': x_{split} must have shape (n, channels, height, "
                    f"width), got {x.shape}"
                )
            if x.dtype != np.float32:
                raise DataError(f"dataset '{self.name}': x_{split} must be float32, got {x.dtype}")
            if y.shape != (x.shape[0],):
                raise DataError(
                    f"dataset '{self.name}': y_{split} must have shape ({x.shape[0]},), got {y.shape}"
                )
            if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
                raise DataError(f"dataset '{self.name}': x_{split} values must lie in [0, 1]")
            if y.size and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise DataError(
                    f"dataset '{self.name}': y_{split} labels must lie in "
                    f"[0, {len(self.class_names) - 1}]"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"dataset '{self.name}': train and test images differ in shape "
                f"({self.x_train.shape[1:]} vs {self.x_test.shape[1:]})"
            )

    @classmethod
    def from_arrays(
        cls,
        x_train: Any,
        y_train: Any,
        x_test: Any | None = None,
        y_test: Any | None = None,
        *,
        class_names: Sequence[str] | None = None,
        name: str = "user-data",
        test_fraction: float = DEFAULT_TEST_FRACTION,
        seed: int = 0,
        description: str = "",
    ) -> ImageDataset:
        """Build a data set from numpy arrays in the layouts users have.

        Images may be ``(n, h, w)`` (grey), ``(n, c, h, w)`` or channels-last ``(n, h, w, c)``
        (recognised when the last dimension is 1 or 3 and the second is not); ``uint8`` (or any
        integer type) is read as 0-255, floats must already lie in [0, 1]. Labels are integers
        ``0..k-1`` with every class present in the training images; ``k`` is
        ``len(class_names)`` when given. Without ``x_test``/``y_test``, ``test_fraction`` of each
        class (at least one image) is held out, chosen with ``numpy.random.default_rng(seed)``.
        Every problem is a one-line :class:`~invguard.errors.DataError` naming the field.
        """
        from invguard.errors import check_float, check_int

        if (x_test is None) != (y_test is None):
            given, missing = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
            raise DataError(f"{given} was given without {missing}: give both or neither")
        frac = check_float(
            "test_fraction", test_fraction, minimum=0.0, maximum=1.0, max_inclusive=False
        )
        check_int("seed", seed, minimum=0)
        xtr = _images_from_array("x_train", x_train)
        ytr = _labels_from_array("y_train", y_train, len(xtr), "x_train")
        if class_names is not None:
            if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
                raise DataError("class_names must be a sequence of strings, one per class")
            names = tuple(class_names)
            if len(set(names)) != len(names):
                raise DataError("class_names must not repeat a name")
        else:
            names = tuple(str(i) for i in range(int(ytr.max(initial=0)) + 1))
        k = len(names)
        if k < 2:
            raise DataError(f"y_train must hold at least 2 classes, got {k}")
        lo, hi = int(ytr.min()), int(ytr.max())
        if lo < 0 or hi >= k:
            raise DataError(
                f"y_train labels must be integers 0..{k - 1}"
                + (" (one per class name)" if class_names is not None else "")
                + f", got values from {lo} to {hi}"
            )
        missing_cls = sorted(set(range(k)) - {int(v) for v in np.unique(ytr)})
        if missing_cls:
            hint = " (labels must start at 0)" if missing_cls[0] == 0 else ""
            raise DataError(
                f"y_train has no image of class {missing_cls[0]}{hint}: labels must be 0..{k - 1} "
                "with every class present"
            )
        if x_test is None:
            if frac == 0.0:
                xte = np.zeros((0, *xtr.shape[1:]), np.float32)
                yte = np.zeros(0, np.int64)
            else:
                tr, te = _stratified_split(ytr, frac, seed)
                xtr, ytr, xte, yte = xtr[tr], ytr[tr], xtr[te], ytr[te]
        else:
            xte = _images_from_array("x_test", x_test)
            yte = _labels_from_array("y_test", y_test, len(xte), "x_test")
            if xte.shape[1:] != xtr.shape[1:]:
                raise DataError(
                    f"x_test images have shape {xte.shape[1:]} (c, h, w) but x_train images "
                    f"have {xtr.shape[1:]}"
                )
            lo, hi = int(yte.min()), int(yte.max())
            if lo < 0 or hi >= k:
                raise DataError(
                    f"y_test labels must be integers 0..{k - 1}, got values from {lo} to {hi}"
                )
        return cls(
            name=name,
            x_train=np.ascontiguousarray(xtr),
            y_train=np.ascontiguousarray(ytr),
            x_test=np.ascontiguousarray(xte),
            y_test=np.ascontiguousarray(yte),
            class_names=names,
            description=description or f"{len(ytr)} training and {len(yte)} held-out images",
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)``."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    def all_images(self) -> tuple[FloatArray, IntArray]:
        """Train and test images together (e.g. to train an evaluation model)."""
        return (
            np.concatenate([self.x_train, self.x_test]),
            np.concatenate([self.y_train, self.y_test]),
        )

    def class_images(self, cls: int, split: str = "train") -> FloatArray:
        """All images of one class from one split ('train' or 'test')."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        out: FloatArray = x[y == cls]
        return out

    def fingerprint(self) -> str:
        """SHA-256 over the name, arrays and class names: a stable key for caches."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(self.name.encode())
            for a in (self.x_train, self.y_train, self.x_test, self.y_test):
                h.update(str(a.shape).encode())
                h.update(str(a.dtype).encode())
                h.update(np.ascontiguousarray(a).tobytes())
            h.update("\x00".join(self.class_names).encode())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]
