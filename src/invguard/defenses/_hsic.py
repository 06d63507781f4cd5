"""BiDO-HSIC: bilateral dependency optimisation (Peng, Liu, Zhang et al., KDD 2022).

For every hidden representation ``Z_j`` of a batch the loss adds
``lambda_x * HSIC(X, Z_j) - lambda_y * HSIC(Z_j, Y)``: the dependence between the input and the
latent is reduced, the dependence between the latent and the label kept. As in the authors' code
(which takes it from the HSIC bottleneck of Ma et al. 2020) HSIC is the normalised estimator
``tr(R_A R_B)`` with ``R = K_c (K_c + eps m I)^-1`` over one-sidedly centred Gaussian Gram matrices
``K_ij = exp(-|a_i - a_j|^2 / (2 sigma^2 d))`` (``d`` the dimension, ``sigma = 5``, ``eps = 1e-5``);
labels enter one-hot. Computed in float64: the kernels are close to 1 and differ in the 4th digit.

With fewer samples in a batch than dimensions (as for images, and in the authors' setting) the
Gram matrix of the input has nearly full rank, ``R_X`` is nearly the centring projection, and
``HSIC(X, Z)`` tends to the effective rank of ``Z``'s Gram matrix (its eigenvalues above
``eps * m``): minimising it compresses the latent rather than measuring its dependence on the input
in the usual sense, while ``HSIC(Z, Y)`` keeps the compressed latent aligned with the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invguard.models.architectures import FeatureClassifier

HSIC_EPS = 1e-5
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SiLU,
    nn.Softplus,
)


def gaussian_gram(a: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(-|a_i - a_j|^2 / (2 sigma^2 d))`` for the rows of ``a`` (flattened), float64."""
    a = a.reshape(len(a), -1).double()
    sq = (a * a).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * a @ a.T).clamp_min(0.0)
    return torch.exp(-dist / (2.0 * sigma * sigma * a.shape[1]))


def _normalised(gram: torch.Tensor) -> torch.Tensor:
    m = gram.shape[0]
    centred = gram - gram.mean(1, keepdim=True)  # K H: one-sided centring, as in the reference
    reg = centred + HSIC_EPS * m * torch.eye(m, dtype=gram.dtype)
    # K_c reg^-1 = reg^-1 K_c (both are functions of K_c)
    out: torch.Tensor = torch.linalg.solve(reg, centred)
    return out


def normalized_hsic(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """Normalised HSIC between the rows of ``a`` and of ``b`` (same batch), Gaussian kernels."""
    ra = _normalised(gaussian_gram(a, sigma))
    rb = _normalised(gaussian_gram(b, sigma))
    return (ra * rb.T).sum()


def hidden_layers(model: FeatureClassifier) -> list[tuple[str, nn.Module]]:
    """The hidden representations BiDO constrains: the output of every activation that is a direct
    child of ``model.features`` (when it is a ``Sequential``), and the penultimate features."""
    feats = model.features
    out: list[tuple[str, nn.Module]] = []
    if isinstance(feats, nn.Sequential):
        children = list(feats.named_children())
        out = [(f"features.{n}", m) for n, m in children if isinstance(m, ACTIVATIONS)]
        if not children or children[-1][1] is not (out[-1][1] if out else None):
            out.append(("features", feats))
    else:
        out.append(("features", feats))
    return out


class HiddenRecorder:
    """Forward hooks that keep the outputs of ``layers`` from the last forward pass."""

    def __init__(self, layers: list[tuple[str, nn.Module]]) -> None:
        self.outputs: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for _, m in layers]

    def _hook(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self.outputs.append(output)

    def take(self) -> list[torch.Tensor]:
        out, self.outputs = self.outputs, []
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def bido_penalty(
    x: torch.Tensor,
    y: torch.Tensor,
    hiddens: list[torch.Tensor],
    num_classes: int,
    *,
    lambda_x: float,
    lambda_y: float,
    sigma: float,
) -> tuple[torch.Tensor, float, float]:
    """``sum_j lambda_x HSIC(X, Z_j) - lambda_y HSIC(Z_j, Y)``, and the mean HSIC terms."""
    onehot = F.one_hot(y, num_classes).double()
    total = torch.zeros((), dtype=torch.float64)
    hx_sum = hy_sum = 0.0
    for z in hiddens:
        hx = normalized_hsic(z, x, sigma)
        hy = normalized_hsic(z, onehot, sigma)
        total = total + lambda_x * hx - lambda_y * hy
        hx_sum += float(hx.detach())
        hy_sum += float(hy.detach())
    k = max(1, len(hiddens))
    return total.float(), hx_sum / k, hy_sum / k
