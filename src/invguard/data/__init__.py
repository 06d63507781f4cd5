"""Built-in data sets and the :class:`ImageDataset` container."""

import numpy as np

from invguard.data.base import ImageDataset
from invguard.data.digits import load_digits_dataset
from invguard.data.faces import (
    DEFAULT_FACE_SIZE,
    load_att_faces,
    load_att_faces_with_auxiliary,
    orl_faces_root,
)
from invguard.data.files import load_image_folder, load_npz_dataset
from invguard.data.mnist import load_mnist, load_mnist_split

BUILTIN_DATASETS = ("att-faces", "att-faces-full", "att-faces-private30", "digits", "mnist-0-4")
BUILTIN_AUXILIARY = ("att-faces-public10", "mnist-5-9")


def load_builtin(name: str) -> ImageDataset:
    """Load a built-in data set by name: 'att-faces' (46x56), 'att-faces-full' (92x112),
    'att-faces-private30' (identities s1-s30 only, 46x56), 'digits' (8x8) or 'mnist-0-4' (MNIST
    digits 0-4, 28x28)."""
    from invguard.errors import InvalidParameterError

    if name == "att-faces":
        return load_att_faces()
    if name == "att-faces-full":
        return load_att_faces((92, 112))
    if name == "att-faces-private30":
        return load_att_faces_with_auxiliary()[0]
    if name == "digits":
        return load_digits_dataset()
    if name == "mnist-0-4":
        return load_mnist_split()[0]
    raise InvalidParameterError(
        f"The 'dataset' parameter must be one of {', '.join(BUILTIN_DATASETS)}, got {name!r}"
    )


def load_builtin_auxiliary(name: str) -> np.ndarray:
    """Built-in auxiliary (public) images for attacks that need them: 'att-faces-public10' is the
    100 images of identities s31-s40, disjoint from 'att-faces-private30'; 'mnist-5-9' the 2,500
    MNIST digits 5-9, disjoint from 'mnist-0-4'."""
    from invguard.errors import InvalidParameterError

    if name == "att-faces-public10":
        return load_att_faces_with_auxiliary()[1]
    if name == "mnist-5-9":
        return load_mnist_split()[1]
    raise InvalidParameterError(
        f"The 'auxiliary' parameter must be one of {', '.join(BUILTIN_AUXILIARY)}, got {name!r}"
    )


__all__ = [
    "BUILTIN_AUXILIARY",
    "BUILTIN_DATASETS",
    "DEFAULT_FACE_SIZE",
    "ImageDataset",
    "load_att_faces",
    "load_att_faces_with_auxiliary",
    "load_builtin",
    "load_builtin_auxiliary",
    "load_digits_dataset",
    "load_image_folder",
    "load_mnist",
    "load_mnist_split",
    "load_npz_dataset",
    "orl_faces_root",
]
