"""Built-in data sets and the :class:`ImageDataset` container."""

from invguard.data.base import ImageDataset
from invguard.data.digits import load_digits_dataset
from invguard.data.faces import (
    DEFAULT_FACE_SIZE,
    load_att_faces,
    load_att_faces_with_auxiliary,
    orl_faces_root,
)
from invguard.data.files import load_image_folder, load_npz_dataset

BUILTIN_DATASETS = ("att-faces", "att-faces-full", "digits")


def load_builtin(name: str) -> ImageDataset:
    """Load a built-in data set by name: 'att-faces' (46x56), 'att-faces-full' (92x112), 'digits'."""
    from invguard.errors import InvalidParameterError

    if name == "att-faces":
        return load_att_faces()
    if name == "att-faces-full":
        return load_att_faces((92, 112))
    if name == "digits":
        return load_digits_dataset()
    raise InvalidParameterError(
        f"The 'dataset' parameter must be one of {', '.join(BUILTIN_DATASETS)}, got {name!r}"
    )


__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_FACE_SIZE",
    "ImageDataset",
    "load_att_faces",
    "load_att_faces_with_auxiliary",
    "load_builtin",
    "load_digits_dataset",
    "load_image_folder",
    "load_npz_dataset",
    "orl_faces_root",
]
