"""The user's own private data: a folder of images per class, or an ``.npz`` file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from invguard.data.base import ImageDataset
from invguard.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff", ".gif")


def _read_split(
    root: Path, classes: list[str], size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        files = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        for f in files:
            try:
                with Image.open(f) as raw:
                    img = raw.convert("L")
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"cannot read image {f}: {exc}") from exc
            if size is None:
                size = img.size
            if img.size != size:
                img = img.resize(size, Image.Resampling.BILINEAR)
            images.append(np.asarray(img, dtype=np.float32) / 255.0)
            labels.append(label)
    if not images:
        return np.zeros((0, 1, 1, 1), np.float32), np.zeros(0, np.int64), size
    return np.stack(images)[:, None], np.asarray(labels, np.int64), size


def load_image_folder(path: str | Path, image_size: tuple[int, int] | None = None) -> ImageDataset:
    """Images in ``path/train/<class>/`` and ``path/test/<class>/``, read as grey-scale in [0, 1].

    Classes are the sub-folder names of ``train`` in sorted order. ``image_size`` (width, height)
    resizes every image; by default all images take the size of the first one.
    """
    root = Path(path)
    train, test = root / "train", root / "test"
    if not train.is_dir():
        raise DataError(
            f"image folder {root} must contain a 'train' folder with one folder per class"
        )
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{train} must contain at least two class folders, found {len(classes)}")
    x_train, y_train, size = _read_split(train, classes, image_size)
    if len(y_train) == 0:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {train}")
    empty = [c for i, c in enumerate(classes) if not (y_train == i).any()]
    if empty:
        raise DataError(f"class folder {train / empty[0]} has no images")
    if test.is_dir():
        x_test, y_test, _ = _read_split(test, classes, size)
    else:
        x_test, y_test = np.zeros((0, *x_train.shape[1:]), np.float32), np.zeros(0, np.int64)
    if len(y_test) == 0:
        x_test = np.zeros((0, *x_train.shape[1:]), np.float32)
    return ImageDataset(
        name=f"folder:{root.name}",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=tuple(classes),
        description=f"images from {root}",
    )


def load_npz_dataset(path: str | Path) -> ImageDataset:
    """An ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (images in [0, 1]).

    Images may be ``(n, h, w)`` or ``(n, c, h, w)``; optional ``class_names``. Loaded with
    ``allow_pickle=False``.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise DataError(
                    f"{p} lacks the array '{missing[0]}' (needs x_train, y_train, x_test, y_test)"
                )
            arrays = {k: np.asarray(npz[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
            names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p} is not a readable .npz file: {exc}") from exc
    xs = {}
    for k in ("x_train", "x_test"):
        x = arrays[k].astype(np.float32)
        if x.ndim == 3:
            x = x[:, None]
        xs[k] = x
    ys = {}
    for k in ("y_train", "y_test"):
        y = arrays[k]
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{p}: '{k}' must hold integer class labels, got dtype {y.dtype}")
        ys[k] = y.astype(np.int64)
    num = int(max(ys["y_train"].max(initial=0), ys["y_test"].max(initial=0))) + 1
    class_names = tuple(names) if names is not None else tuple(str(i) for i in range(num))
    return ImageDataset(
        name=f"npz:{p.stem}",
        x_train=xs["x_train"],
        y_train=ys["y_train"],
        x_test=xs["x_test"],
        y_test=ys["y_test"],
        class_names=class_names,
        description=f"arrays from {p}",
    )
