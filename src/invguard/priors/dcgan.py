"""DCGAN generator and discriminator (Radford et al., ICLR 2016), optionally class-conditional.

The 64x64 unconditional generator has the layout of the PyTorch DCGAN tutorial, so the public face
generator's weights (``gan-face-generate``) load into it unchanged. The discriminator uses spectral
normalisation (Miyato et al. 2018) and, when conditional, a projection head (Miyato and Koyama
2018), the cGAN of PLG-MI (Yuan et al. 2023).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from invguard.errors import InvalidParameterError

SIZES = (32, 64)


def _check(size: int, channels: int) -> None:
    if size not in SIZES:
        raise InvalidParameterError(f"The 'size' parameter must be one of 32, 64, got {size!r}")
    if channels not in (1, 3):
        raise InvalidParameterError(f"The 'channels' parameter must be 1 or 3, got {channels!r}")


class DCGANGenerator(nn.Module):
    """``z (n, nz) [, y (n,)] -> image (n, channels, size, size)`` in [-1, 1]."""

    def __init__(
        self,
        *,
        nz: int = 100,
        ngf: int = 64,
        channels: int = 3,
        size: int = 64,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        _check(size, channels)
        self.nz, self.size, self.num_classes = nz, size, num_classes
        cond = 0 if num_classes is None else nz
        self.embed = nn.Embedding(num_classes, nz) if num_classes is not None else None
        mult = 8 if size == 64 else 4
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz + cond, ngf * mult, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * mult),
            nn.ReLU(True),
        ]
        while mult > 1:
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    @property
    def num_blocks(self) -> int:
        """Hidden blocks (transposed convolution, batch norm, ReLU) before the output layer."""
        return (len(self.main) - 2) // 3

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.main(self._input(z, y))
        return out

    def _input(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise InvalidParameterError("this generator is conditional: pass classes y")
            z = torch.cat([z, self.embed(y)], dim=1)
        return z[:, :, None, None]

    def head(self, z: torch.Tensor, y: torch.Tensor | None, blocks: int) -> torch.Tensor:
        """The features after the first ``blocks`` hidden blocks (0: the latent as a 1x1 map)."""
        out: torch.Tensor = self.main[: 3 * blocks](self._input(z, y))
        return out

    def step(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Features after ``start`` hidden blocks carried on to those after ``stop`` blocks."""
        out: torch.Tensor = self.main[3 * start : 3 * stop](h)
        return out

    def tail(self, h: torch.Tensor, blocks: int) -> torch.Tensor:
        """The image from the features after ``blocks`` hidden blocks (see :meth:`head`)."""
        out: torch.Tensor = self.main[3 * blocks :](h)
        return out


class DCGANDiscriminator(nn.Module):
    """``image [, y] -> realism logit (n,)``; spectral norm, projection head when conditional."""

    def __init__(
        self, *, ndf: int = 64, channels: int = 3, size: int = 64, num_classes: int | None = None
    ) -> None:
        super().__init__()
        _check(size, channels)
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(channels, ndf, 4, 2, 1))]
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        width, res = ndf, size // 2
        while res > 4:
            layers += [spectral_norm(nn.Conv2d(width, width * 2, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            width, res = width * 2, res // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        feat = width * 4 * 4
        self.head = spectral_norm(nn.Linear(feat, 1))
        self.embed = (
            spectral_norm(nn.Embedding(num_classes, feat)) if num_classes is not None else None
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out: torch.Tensor = self.head(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise InvalidParameterError("this discriminator is conditional: pass classes y")
            out = out + (self.embed(y) * h).sum(1)
        return out
