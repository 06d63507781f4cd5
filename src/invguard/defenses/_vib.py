"""MID: a variational information bottleneck on the prediction (Wang, Song, Zhang et al., AAAI 2021).

The penultimate features ``h`` of the reference architecture feed a stochastic encoder that gives the
mean ``mu(h)`` and standard deviation ``std(h) = softplus(s(h) - 5)`` of a ``k``-dimensional latent
(the authors' parameterisation, ``k`` half the feature width by default); training classifies a
sample ``z = mu + std * eps`` and adds ``beta * KL(N(mu, std^2) || N(0, I))``, an upper bound on
``I(X; Z)``. At inference the latent is its mean: the deployed model is ``head(mu(features(x)))``,
plain layers with no randomness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invguard.models.architectures import FeatureClassifier

STD_SHIFT = 5.0  # std = softplus(s - 5): starts small, as in the MID code


class VIBClassifier(nn.Module):
    """Training-time model: features, the encoder's mean and std layers, and the head on ``z``."""

    def __init__(self, features: nn.Module, feat_dim: int, k: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.mu = nn.Linear(feat_dim, k)
        self.std = nn.Linear(feat_dim, k)
        self.head = nn.Linear(k, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic logits (the latent's mean)."""
        out: torch.Tensor = self.head(self.mu(self.features(x)))
        return out

    def sample(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits of a sampled z, mu, std)``."""
        h = self.features(x)
        mu = self.mu(h)
        std = F.softplus(self.std(h) - STD_SHIFT)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return self.head(mu + std * eps), mu, std

    def deterministic(self) -> FeatureClassifier:
        """The deployed model ``head(mu(features(x)))``; shares this model's layers."""
        return inference_model(self.features, self.mu, self.head)


def inference_model(features: nn.Module, mu: nn.Linear, head: nn.Linear) -> FeatureClassifier:
    """``FeatureClassifier`` whose features end in the latent mean (so ``embed`` gives ``mu``)."""
    return FeatureClassifier(nn.Sequential(features, mu), head)


def kl_to_standard_normal(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, std^2) || N(0, I))`` summed over the latent, averaged over the batch (nats)."""
    return (-0.5 * (1 + 2 * torch.log(std) - mu.pow(2) - std.pow(2))).sum(1).mean()
