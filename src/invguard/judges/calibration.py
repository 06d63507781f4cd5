"""Calibration rows: image sets whose right answer is known, scored by every judge in every run.

* ``noise``: uniform random images. No judge should name the identity above chance.
* ``grey``: the constant mid-grey image. One image for every class: at most one hit by construction.
* ``class_mean``: the average of each identity's private training images: a perfect but blurry
  "reconstruction"; it shows how much a judge credits averages.
* ``held_out``: one real photo of each identity that no target or judge trained on: what a
  reconstruction that truly shows the person should get.
* ``artefacts``: "fooling images" (Nguyen, Yosinski, Clune, CVPR 2015; Szegedy et al. 2014): uniform
  noise plus an L-infinity-bounded perturbation (8/255) optimised by projected gradient ascent on
  the target's log-probability of the class, with no image prior. A person sees noise; a judge that
  names the class anyway is swayed by adversarial features that transfer between classifiers
  (Ho et al. 2025), and is flagged unreliable for the run. Without gradients from the target the
  artefacts are crafted against a surrogate (a reference model trained on the same private data).

A judge is flagged **unreliable** for a run when it names the class of the noise or artefact images
significantly more often than chance (one-sided binomial test, p < 0.01), and **weak** when it
names fewer than half of the held-out real photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.stats import binomtest

from invguard.data.base import ImageDataset
from invguard.judges.base import FloatArray
from invguard.judges.open_set import split_public
from invguard.targets.base import GradientTarget, Target
from invguard.targets.pytorch import TorchTarget

CALIBRATION_ROWS = ("noise", "grey", "class_mean", "held_out", "artefacts", "public_lookalike")
NULL_ROWS = ("noise", "grey", "artefacts")  # a person sees no identity in these
ARTEFACT_EPS = 8.0 / 255.0
ARTEFACT_STEPS = 40
UNRELIABLE_P = 0.01
WEAK_HELD_OUT = 0.5

ROW_DESCRIPTIONS = {
    "noise": "uniform random images (a person sees noise)",
    "grey": "the constant mid-grey image (a person sees grey)",
    "class_mean": "average of each identity's private training images (blurry, but the person)",
    "held_out": "one real photo per identity that no target or judge trained on",
    "artefacts": (
        "noise plus an 8/255 perturbation optimised against the target, no image prior "
        "(a person sees noise)"
    ),
    "public_lookalike": (
        "for each class, the attacker's public image that the target is most confident is that "
        "class (from the half no judge saw), no attack: a verdict at this level is what public "
        "data alone gives"
    ),
}


@dataclass
class CalibrationSet:
    """The calibration images for a run: ``images[row]`` has one image per entry of ``classes``."""

    classes: NDArray[np.int64]
    images: dict[str, FloatArray]
    notes: dict[str, str] = field(default_factory=dict)


def fooling_images(
    target: GradientTarget,
    classes: NDArray[np.int64],
    start: FloatArray,
    *,
    eps: float = ARTEFACT_EPS,
    steps: int = ARTEFACT_STEPS,
) -> FloatArray:
    """Projected gradient ascent on log p(class) within ``eps`` of ``start`` (all classes batched)."""
    x0 = torch.from_numpy(np.ascontiguousarray(start)).to(target.device)
    cls = torch.from_numpy(classes).to(target.device)
    x = x0.clone()
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        _, grad = target.class_gradient(x, cls, quantity="log_probability")
        x = x + alpha * grad.sign()
        x = torch.min(torch.max(x, x0 - eps), x0 + eps).clamp(0.0, 1.0)
    out: FloatArray = x.detach().cpu().numpy().astype(np.float32)
    return out


def held_out_photos(dataset: ImageDataset, classes: NDArray[np.int64]) -> FloatArray | None:
    """The first held-out photo of each class, or None when some class has none."""
    firsts = []
    for c in classes.tolist():  # one index lookup per class
        idx = np.flatnonzero(dataset.y_test == c)
        if idx.size == 0:
            return None
        firsts.append(int(idx[0]))
    out: FloatArray = dataset.x_test[np.asarray(firsts)]
    return out


def class_means(dataset: ImageDataset, classes: NDArray[np.int64]) -> FloatArray:
    """Mean private training image of each class, ``(len(classes), c, h, w)``."""
    sums = np.zeros((dataset.num_classes, *dataset.image_shape), dtype=np.float64)
    np.add.at(sums, dataset.y_train, dataset.x_train)
    counts = np.bincount(dataset.y_train, minlength=dataset.num_classes).astype(np.float64)
    means = sums / np.maximum(counts, 1.0).reshape(-1, 1, 1, 1)
    out: FloatArray = means[classes].astype(np.float32)
    return out


def public_lookalikes(target: Target, public: FloatArray, classes: NDArray[np.int64]) -> FloatArray:
    """Per class, the public image with the highest target probability for it (one batch), among
    the held-out half of ``public`` (:func:`~invguard.judges.open_set.split_public`) that an
    open-set panel never sees."""
    pool = split_public(public)[1] if len(public) >= 2 else np.asarray(public, dtype=np.float32)
    probs = np.asarray(target.predict(np.ascontiguousarray(pool, dtype=np.float32)))
    out: FloatArray = pool[probs[:, classes].argmax(axis=0)].astype(np.float32)
    return out


def calibration_set(
    dataset: ImageDataset,
    classes: NDArray[np.int64],
    *,
    artefact_target: GradientTarget | None,
    artefact_source: str,
    rng: np.random.Generator,
    public: FloatArray | None = None,
) -> CalibrationSet:
    """Build every calibration row for ``classes`` (artefacts only when a gradient source is given)."""
    shape = (len(classes), *dataset.image_shape)
    noise = rng.random(shape, dtype=np.float32)
    images: dict[str, FloatArray] = {
        "noise": noise,
        "grey": np.full(shape, 0.5, dtype=np.float32),
        "class_mean": class_means(dataset, classes),
    }
    notes = {k: ROW_DESCRIPTIONS[k] for k in CALIBRATION_ROWS}
    held = held_out_photos(dataset, classes)
    if held is not None:
        images["held_out"] = held
    else:
        notes["held_out"] = "not available: some identity has no held-out photo"
    if artefact_target is not None:
        images["artefacts"] = fooling_images(
            artefact_target, classes, rng.random(shape, np.float32)
        )
        notes["artefacts"] = f"{ROW_DESCRIPTIONS['artefacts']}; crafted against {artefact_source}"
    else:
        notes["artefacts"] = f"not available: {artefact_source}"
    if public is not None and len(public) and artefact_target is not None:
        images["public_lookalike"] = public_lookalikes(artefact_target, public, classes)
    else:
        notes["public_lookalike"] = "not available: no public images, or no model to rank them"
    return CalibrationSet(classes=classes, images=images, notes=notes)


def fresh_gradient_view(target: Target) -> GradientTarget | None:
    """A gradient target over the same model that does not spend the attack's query budget."""
    if isinstance(target, TorchTarget):
        return TorchTarget(target.model, input_shape=target.input_shape)
    if isinstance(target, GradientTarget):
        return target
    return None


def chance_p_value(hits: int, n: int, chance: float) -> float:
    """One-sided binomial p-value of ``hits`` or more in ``n`` at rate ``chance``."""
    if n == 0:
        return 1.0
    return float(binomtest(hits, n, chance, alternative="greater").pvalue)


def reliability(top1: dict[str, NDArray[np.bool_]], num_classes: int) -> tuple[str, dict[str, Any]]:
    """``("reliable"|"unreliable"|"weak", evidence)`` of one judge from its calibration top-1 hits."""
    chance = 1.0 / num_classes
    evidence: dict[str, Any] = {}
    status = "reliable"
    for row in ("noise", "artefacts"):
        hits = top1.get(row)
        if hits is None:
            continue
        p = chance_p_value(int(hits.sum()), len(hits), chance)
        evidence[f"{row}_p_value"] = p
        if p < UNRELIABLE_P:
            status = "unreliable"
            evidence.setdefault("reasons", []).append(
                f"names the class of {int(hits.sum())}/{len(hits)} {row} images "
                f"(chance {chance:.3f}, p = {p:.1e})"
            )
    held = top1.get("held_out")
    if status == "reliable" and held is not None and float(held.mean()) < WEAK_HELD_OUT:
        status = "weak"
        evidence.setdefault("reasons", []).append(
            f"names only {int(held.sum())}/{len(held)} held-out real photos"
        )
    return status, evidence
