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


def restore_labels(original: np.ndarray, perturbed: np.ndarray) -> FloatArray:
    """Where ``perturbed`` changed a row's arg-max, swap the two scores back into place.

    The row stays a permutation of the perturbed scores (same sum, same set of values) and its
    arg-max is the original label again; where the perturbation left a tie at the top, the label's
    score is raised by one float32 step so that it wins the tie.
    """
    out = np.array(perturbed, dtype=np.float32, copy=True)
    want = original.argmax(axis=1)
    got = out.argmax(axis=1)
    rows = np.flatnonzero(want != got)
    if rows.size:
        a, b = want[rows], got[rows]
        out[rows, a], out[rows, b] = out[rows, b], out[rows, a].copy()
        # a perturbation can also flatten the top into a tie: lift the label by the smallest step
        tied = rows[out[rows].argmax(axis=1) != want[rows]]
        if tied.size:
            top = out[tied].max(axis=1)
            out[tied, want[tied]] = np.nextafter(top, np.float32(np.inf))
    return out


def round_scores(probs: np.ndarray, decimals: int) -> FloatArray:
    """Round every score to ``decimals`` decimals (Fredrikson et al. 2015's countermeasure).

    Rounding can tie the top score with another; where that would change the arg-max, the true
    top-1 gets one more step of ``10**-decimals``, so the label is always kept.
    """
    p = _check(probs)
    if decimals < 0:
        raise InvalidParameterError(f"The 'decimals' parameter must be an int >= 0, got {decimals}")
    out: FloatArray = np.round(p, decimals).astype(np.float32)
    want = p.argmax(axis=1)
    rows = np.flatnonzero(out.argmax(axis=1) != want)
    if rows.size:
        out[rows, want[rows]] = out[rows].max(axis=1) + np.float32(10.0**-decimals)
    return out


def gaussian_noise(probs: np.ndarray, sigma: float, rng: np.random.Generator) -> FloatArray:
    """Add N(0, sigma^2) noise to the scores, clip to [0, 1], renormalise, keep the labels."""
    p = _check(probs)
    if not sigma > 0:
        raise InvalidParameterError(f"The 'sigma' parameter must be a float > 0, got {sigma}")
    noisy = np.clip(p + rng.normal(0.0, sigma, size=p.shape).astype(np.float32), 1e-6, 1.0)
    noisy /= noisy.sum(axis=1, keepdims=True)
    return restore_labels(p, noisy)


def reverse_sigmoid(probs: np.ndarray, beta: float, gamma: float) -> FloatArray:
    """The reverse sigmoid perturbation of Lee, Edwards, Molloy and Srivastava (IEEE S&P
    Workshops 2019): ``y' = alpha * (y - beta * (sigmoid(gamma * logit(y)) - 1/2))``, with
    ``alpha`` renormalising each row; labels are kept (see :func:`restore_labels`)."""
    p = _check(probs)
    if not beta > 0:
        raise InvalidParameterError(f"The 'beta' parameter must be a float > 0, got {beta}")
    if not gamma > 0:
        raise InvalidParameterError(f"The 'gamma' parameter must be a float > 0, got {gamma}")
    y = np.clip(p.astype(np.float64), 1e-9, 1.0 - 1e-9)
    r = beta * (1.0 / (1.0 + np.exp(-gamma * np.log(y / (1.0 - y)))) - 0.5)
    perturbed = np.clip(y - r, 0.0, 1.0)
    sums = perturbed.sum(axis=1, keepdims=True)
    perturbed = np.where(sums > 0, perturbed / np.where(sums > 0, sums, 1.0), 1.0 / p.shape[1])
    return restore_labels(p, perturbed.astype(np.float32))


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
