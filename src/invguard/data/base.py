"""The image data set container shared by every part of InvGuard."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from invguard.errors import DataError

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]


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
