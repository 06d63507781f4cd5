"""Output policies as pure, batched functions over probability arrays.

These are the building blocks of the output defences (``Defense.wrap``), the HTTP model server's
and the gateway's output policy, and of targets that declare truncated or rounded outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError

if TYPE_CHECKING:  # no runtime import: targets use these functions, so they must not import targets
    from invguard.targets.base import OutputSpec

FloatArray = NDArray[np.float32]


def _check(probs: np.ndarray) -> NDArray[np.float32]:
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 2:
        raise InvalidParameterError(f"scores must have shape (n, classes), got {p.shape}")
    return p


def top_k(probs: np.ndarray, k: int) -> FloatArray:
    """Keep each row's ``k`` highest scores, set the others to 0 (ties broken by lower index)."""
    p = _check(probs)
    if k < 1:
        raise InvalidParameterError(f"The 'k' parameter must be an int >= 1, got {k}")
    if k >= p.shape[1]:
        return p.copy()
    # stable argsort on -p keeps the lowest index first among ties
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(p)
    rows = np.arange(len(p))[:, None]
    out[rows, order] = p[rows, order]
    return out


def round_scores(probs: np.ndarray, decimals: int) -> FloatArray:
    """Round every score to ``decimals`` decimals (Fredrikson et al. 2015's countermeasure)."""
    p = _check(probs)
    if decimals < 0:
        raise InvalidParameterError(f"The 'decimals' parameter must be an int >= 0, got {decimals}")
    out: FloatArray = np.round(p, decimals).astype(np.float32)
    return out


def label_only(probs: np.ndarray) -> FloatArray:
    """One-hot rows at each row's arg-max: the label and nothing else."""
    p = _check(probs)
    out = np.zeros_like(p)
    out[np.arange(len(p)), p.argmax(axis=1)] = 1.0
    return out


def apply_output_spec(probs: np.ndarray, spec: OutputSpec) -> FloatArray:
    """What a target that declares ``spec`` returns for true probabilities ``probs``."""
    if not spec.scores:
        return label_only(probs)
    out = _check(probs)
    if spec.top_k is not None:
        out = top_k(out, spec.top_k)
    if spec.decimals is not None:
        out = round_scores(out, spec.decimals)
    return out
