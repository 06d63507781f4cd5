"""Open-set judging: a reconstruction that looks like the attacker's *public* images is no leak.

The judges of the GMI/KED-MI protocols are closed-set: they must name one of the private classes,
so a public digit 6 that resembles a 0 is "a 0" to them, and a generator trained on public data
earns a verdict for drawing public look-alikes (the ``public_lookalike`` calibration row measures
exactly that). An open-set panel gives every judge one more class, ``public``, made of half of the
attacker's public images (:func:`split_public`): the evaluation models are trained with it, and the
nearest-neighbour judges (face embedding, pixel structure) keep it in their galleries. Where a
judge ranks ``public`` first it abstains (:class:`RejectPublicJudge`), which counts as a miss.
The other half of the public images is never shown to a judge; the look-alike calibration row is
drawn from it, so that row measures the judges' generalisation rather than their memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.data.base import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.judges.base import FloatArray, Judge

PUBLIC_CLASS_NAME = "public (attacker's own images)"


def split_public(public: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(the judges' half, the held-out half) of the attacker's public images: even and odd rows."""
    arr = np.asarray(public, dtype=np.float32)
    if arr.ndim != 4 or len(arr) < 2:
        raise InvalidParameterError(
            f"public images must have shape (m >= 2, channels, height, width), got {arr.shape}"
        )
    return arr[0::2], arr[1::2]


def open_set_dataset(dataset: ImageDataset, public: FloatArray) -> ImageDataset:
    """``dataset`` with one extra class holding the judges' half of ``public`` (train and test).

    Three quarters of that half join the training split and the rest the test split, so that the
    evaluation model's held-out accuracy also covers the public class.
    """
    judges_half, _ = split_public(public)
    if judges_half.shape[1:] != dataset.x_train.shape[1:]:
        raise InvalidParameterError(
            f"public images have shape {judges_half.shape[1:]}, the private images "
            f"{dataset.x_train.shape[1:]}"
        )
    c = dataset.num_classes
    cut = max(1, (3 * len(judges_half)) // 4)
    train, test = judges_half[:cut], judges_half[cut:]
    return dataclasses.replace(
        dataset,
        name=f"{dataset.name}+public",
        x_train=np.concatenate([dataset.x_train, train]).astype(np.float32),
        y_train=np.concatenate([dataset.y_train, np.full(len(train), c, dtype=np.int64)]),
        x_test=np.concatenate([dataset.x_test, test]).astype(np.float32),
        y_test=np.concatenate([dataset.y_test, np.full(len(test), c, dtype=np.int64)]),
        class_names=(*dataset.class_names, PUBLIC_CLASS_NAME),
        description=f"{dataset.description} (+ the attacker's public images as one class)",
        _fingerprint=[],
    )


class RejectPublicJudge:
    """A judge over ``num_classes + 1`` classes (the last: public) seen as one over ``num_classes``
    that abstains (every score -inf, a miss) on images it ranks as public."""

    def __init__(self, inner: Judge, num_classes: int) -> None:
        if inner.num_classes != num_classes + 1:
            raise InvalidParameterError(
                f"judge '{inner.name}' scores {inner.num_classes} classes; an open-set judge of "
                f"{num_classes} private classes needs {num_classes + 1} (the last: public)"
            )
        self.inner = inner
        self.name = inner.name
        self.family = inner.family
        self.num_classes = num_classes

    def scores(self, images: FloatArray) -> NDArray[np.float64]:
        full = np.asarray(self.inner.scores(images), dtype=np.float64)
        out = full[:, : self.num_classes].copy()
        out[full.argmax(axis=1) == self.num_classes] = -np.inf
        return out

    def info(self) -> dict[str, Any]:
        return {
            **self.inner.info(),
            "open_set": (
                "abstains (a miss) when it ranks the attacker's public images first; trained or "
                "indexed with half of them as one extra class"
            ),
        }
