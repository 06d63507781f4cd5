"""A CNN of the user's own design (not an InvGuard reference architecture).

``examples/your_own_model.py`` trains it; InvGuard rebuilds it through the factory ``my_cnn:build``
(run from the ``examples`` folder, or with it on ``PYTHONPATH``) to load ``mine.safetensors``.
"""

from __future__ import annotations

import torch
from torch import nn


class MyCNN(nn.Module):
    """Two conv blocks (conv, batch norm, GELU, max-pool), dropout and a linear head, for images of
    ``height`` x ``image_width`` pixels (the AT&T faces at 46x56 by default)."""

    def __init__(
        self,
        channels: int = 1,
        classes: int = 40,
        width: int = 16,
        height: int = 56,
        image_width: int = 46,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.GELU(),
            nn.MaxPool2d(2),
        )
        features = 2 * width * (height // 4) * (image_width // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(features, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def build(
    channels: int = 1, classes: int = 40, width: int = 16, height: int = 56, image_width: int = 46
) -> MyCNN:
    """The factory InvGuard calls: ``my_cnn:build`` with ``kwargs`` such as ``{"width": 16}``."""
    return MyCNN(channels, classes, width, height, image_width)
