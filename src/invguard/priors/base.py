"""The image-prior contract: a generator ``z (, y) -> image`` in the target's input space.

Generative-prior inversion (GMI, Zhang et al. CVPR 2020; KED-MI, Chen et al. ICCV 2021; PLG-MI,
Yuan et al. AAAI 2023; Plug & Play Attacks, Struppek et al. ICML 2022) searches the latent space of
a generator trained on *public* images instead of the pixel space, so that what the attack finds is
an image the generator can draw (a face, a digit) rather than an adversarial pattern.

An :class:`ImagePrior` wraps a frozen generator (and, for GMI's realism term, its discriminator) and
an :class:`OutputMap` that turns the generator's output (``tanh`` range, its own size and channels)
into a batch the target accepts: grey or RGB, a crop, a resize, the target's value range.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from invguard.errors import InvalidParameterError, check_float
from invguard.priors.dcgan import DCGANGenerator

ImageShape = tuple[int, int, int]
Box = tuple[float, float, float, float]  # top, bottom, left, right, as fractions of the output


@dataclass(frozen=True, kw_only=True)
class OutputMap:
    """How a generator's output becomes a target input (all steps differentiable).

    ``crop`` keeps the box ``(top, bottom, left, right)`` (fractions of the generator's output);
    ``scale`` < 1 pastes the (cropped) image smaller, centred, onto a canvas of ``background``
    (e.g. a tight face crop onto the dark background of a passport-style photo); ``shift_y`` moves it
    down by that fraction of the canvas height. Colour becomes grey by ITU-R 601 luma; grey becomes
    colour by repetition. ``source_range`` is the generator's output range.
    """

    shape: ImageShape
    crop: Box = (0.0, 1.0, 0.0, 1.0)
    scale: float = 1.0
    shift_y: float = 0.0
    background: float = 0.0
    value_range: tuple[float, float] = (0.0, 1.0)
    source_range: tuple[float, float] = (-1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1 or self.shape[0] not in (1, 3):
            raise InvalidParameterError(
                f"The 'shape' parameter must be (channels 1 or 3, height, width), got {self.shape!r}"
            )
        t, b, left, r = self.crop
        if not (0.0 <= t < b <= 1.0 and 0.0 <= left < r <= 1.0):
            raise InvalidParameterError(
                "The 'crop' parameter must be (top, bottom, left, right) fractions with "
                f"0 <= top < bottom <= 1 and 0 <= left < right <= 1, got {self.crop!r}"
            )
        check_float("scale", self.scale, minimum=0.1, maximum=1.0)
        check_float("shift_y", self.shift_y, minimum=-0.5, maximum=0.5)
        check_float("background", self.background, minimum=0.0, maximum=1.0)
        for name, (lo, hi) in (
            ("value_range", self.value_range),
            ("source_range", self.source_range),
        ):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise InvalidParameterError(
                    f"The '{name}' parameter must be (low, high) with low < high, got {(lo, hi)!r}"
                )

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """Map a generator batch ``(n, c, H, W)`` to the target's ``(n, *shape)``."""
        lo, hi = self.source_range
        x = (raw - lo) / (hi - lo)  # [0, 1]
        c, h, w = self.shape
        if x.shape[1] == 3 and c == 1:
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        elif x.shape[1] == 1 and c == 3:
            x = x.repeat(1, 3, 1, 1)
        t, b, left, r = self.crop
        rows, cols = x.shape[2], x.shape[3]
        x = x[:, :, round(t * rows) : round(b * rows), round(left * cols) : round(r * cols)]
        if self.scale < 1.0 or self.shift_y != 0.0:
            x = self._paste(x, (h, w))
        elif tuple(x.shape[2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        vlo, vhi = self.value_range
        return x * (vhi - vlo) + vlo

    def _paste(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        n = x.shape[0]
        small = F.interpolate(
            x,
            size=(max(1, round(size[0] * self.scale)), max(1, round(size[1] * self.scale))),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = 1.0 / self.scale
        theta[:, 1, 1] = 1.0 / self.scale
        theta[:, 1, 2] = -2.0 * self.shift_y / self.scale
        grid = F.affine_grid(theta, [n, x.shape[1], *size], align_corners=False)
        out = F.grid_sample(small, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mask = F.grid_sample(
            torch.ones_like(small), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return out + (1.0 - mask) * self.background

    def describe(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "crop": list(self.crop),
            "scale": self.scale,
            "shift_y": self.shift_y,
            "background": self.background,
        }


@dataclass(eq=False)
class ImagePrior:
    """A frozen generator with its latent distribution ``N(0, I)`` and its output map.

    ``num_classes`` is set for a conditional generator (PLG-MI), whose classes are the target's.
    ``discriminator`` (optional) scores realism of raw generator output, for GMI's prior loss.
    ``info`` records where the weights came from (shown in reports).
    """

    generator: nn.Module
    latent_dim: int
    output_map: OutputMap
    name: str
    num_classes: int | None = None
    discriminator: nn.Module | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for module in (self.generator, self.discriminator):
            if module is not None:
                # a torch.export program is already in eval form and refuses eval()
                with contextlib.suppress(NotImplementedError):
                    module.eval()
                for p in module.parameters():
                    p.requires_grad_(False)

    @property
    def shape(self) -> ImageShape:
        return self.output_map.shape

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` latents from the prior's distribution, drawn from ``generator``."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Raw generator output for latents ``z`` (and classes ``y`` when conditional)."""
        if self.conditional:
            if y is None:
                raise InvalidParameterError(f"prior '{self.name}' is conditional: pass classes y")
            out: torch.Tensor = self.generator(z, y)
        else:
            out = self.generator(z)
        return out

    @property
    def feature_blocks(self) -> int:
        """Hidden generator blocks whose outputs can be searched (IF-GMI); 0 for a black box."""
        g = self.generator
        return g.num_blocks if isinstance(g, DCGANGenerator) else 0

    def features(self, z: torch.Tensor, y: torch.Tensor | None, blocks: int) -> torch.Tensor:
        """The generator's features after ``blocks`` hidden blocks (see :attr:`feature_blocks`)."""
        g = self._split_generator(blocks)
        if self.conditional and y is None:
            raise InvalidParameterError(f"prior '{self.name}' is conditional: pass classes y")
        return g.head(z, y, blocks)

    def carry(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Features after ``start`` blocks carried on to those after ``stop`` blocks."""
        return self._split_generator(stop).step(h, start, stop)

    def decode_features(self, h: torch.Tensor, blocks: int) -> torch.Tensor:
        """Raw generator output from the features after ``blocks`` hidden blocks."""
        return self._split_generator(blocks).tail(h, blocks)

    def _split_generator(self, blocks: int) -> DCGANGenerator:
        g = self.generator
        if not isinstance(g, DCGANGenerator) or not 0 <= blocks <= g.num_blocks:
            raise InvalidParameterError(
                f"prior '{self.name}' exposes features after 0 to {self.feature_blocks} "
                f"generator blocks, got {blocks}"
            )
        return g

    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in the target's input space for latents ``z`` (differentiable)."""
        return self.output_map(self.decode(z, y))

    def realism(self, raw: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor | None:
        """The discriminator's logit per raw image (higher is more realistic), or None."""
        if self.discriminator is None:
            return None
        out: torch.Tensor = (
            self.discriminator(raw, y) if self.conditional else self.discriminator(raw)
        )
        return out.reshape(len(raw))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latent_dim": self.latent_dim,
            "conditional": self.conditional,
            "discriminator": self.discriminator is not None,
            "output_map": self.output_map.describe(),
            **self.info,
        }
