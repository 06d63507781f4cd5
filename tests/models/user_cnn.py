"""A user's own CNN (not an InvGuard reference architecture), importable as a factory:
``tests.models.user_cnn:build_user_cnn``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class UserCNN(nn.Module):
    """Conv, batch norm, GELU and dropout, then a global-pooled linear head."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 12) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.2),
        )
        self.classify = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classify(self.body(x))
        return out


class SoftmaxEnded(nn.Module):
    """A model that returns probabilities (ends in softmax), as many deployed models do."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=1)


def build_user_cnn(channels: int = 1, classes: int = 10, width: int = 12) -> UserCNN:
    return UserCNN(channels, classes, width)


def train_user_cnn(
    x: np.ndarray, y: np.ndarray, *, epochs: int = 6, width: int = 12, seed: int = 0
) -> UserCNN:
    """A few seconds of Adam on ``x`` (n, c, h, w) in [0, 1]; returned in eval mode."""
    torch.manual_seed(seed)
    model = build_user_cnn(int(x.shape[1]), int(y.max()) + 1, width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()
