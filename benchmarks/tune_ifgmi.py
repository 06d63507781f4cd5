"""IF-GMI's feature-stage settings on the faces zoo's convolutional models: tune half, held-out half.

For each setting (``feature_layers`` and ``feature_radius``; ``none`` is PPA, no feature stage) and
each convolutional zoo model (``benchmarks/_zoo_models.py``, 40 AT&T identities, the public face
prior, seed 0): every judge's top-1, the verdict and the share of reconstructions in which dlib's
face detector finds a face. The rule that chose the defaults: on the tuning half, the highest mean
verdict among settings that lower no judge's mean against PPA and keep at least half of PPA's
detected faces (and, for the final step, run within the 120 s goal); the held-out half is only
reported. A setting may end in ``xK`` plus ``select`` or ``mean``: ``K`` candidates per class and
the final step (PPA's selection, their pixel mean, or their mean once aligned); without it, IF-GMI's defaults.
Any other integer or float field of ``IFGMI`` may follow as ``+name=value`` (``+steps=120``).

    python benchmarks/tune_ifgmi.py --settings "none;2,3@0.05;2,3@0.1;2,3@0.2;3@0.1"
    python benchmarks/tune_ifgmi.py --settings "2,3@0.05x1select;2,3@0.05x2mean;2,3@0.05x3mean" \
        --seeds 0,1
    python benchmarks/tune_ifgmi.py --settings "2,3@0.05x2mean;2,3@0.05x2mean+steps=120" --seeds 0,1
"""

from __future__ import annotations

import argparse
import time
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from _common import cache, judged_row, table
from _zoo_models import conv_models

from invguard.attacks import InversionRequest
from invguard.attacks.generative import IFGMI, PPA
from invguard.data import load_builtin
from invguard.judges import judge_run, reference_panel
from invguard.priors import load_public_face_prior
from invguard.targets import TorchTarget


def _attack(setting: str) -> PPA | IFGMI:
    """``none`` (PPA) or ``LAYERS@RADIUS[xK(select|mean|aligned_mean)][+name=value...]`` such as
    ``2,3@0.05x2mean+steps=120``."""
    if setting == "none":
        return PPA()
    setting, *fields = setting.split("+")
    layers, radius = setting.split("@")
    radius, _, final = radius.partition("x")
    extra: dict[str, Any] = {}
    for name, _, value in (f.partition("=") for f in fields):
        extra[name] = float(value) if "." in value or "e" in value else int(value)
    if final:
        mode = next(m for m in ("aligned_mean", "mean", "select") if final.endswith(m))
        extra |= {"candidates": int(final.removesuffix(mode)), "final": mode}
    return IFGMI(
        feature_layers=tuple(int(v) for v in layers.split(",")),
        feature_radius=float(radius),
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="none;2,3@0.05;2,3@0.1;2,3@0.2;3@0.1")
    parser.add_argument("--seeds", default="0", help="attack seeds, comma-separated")
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_builtin("att-faces")
    panel, _, _ = reference_panel(data, cache=cache())
    prior = load_public_face_prior(data.image_shape)
    rows: list[dict[str, object]] = []
    for zm in conv_models(data, Path(cache().root) / "zoo"):
        half, spec = zm.split, zm.spec
        for setting, seed in product(args.settings.split(";"), _seeds(args.seeds)):
            target = TorchTarget(zm.model, input_shape=data.image_shape)
            result = _attack(setting).run(target, InversionRequest(prior=prior), rng=seed)
            s = judge_run(panel, data, result.reconstructions, result.classes, target).summary()
            keys = {"half": half, "model": spec.name, "setting": setting, "seed": seed}
            rows.append(judged_row(keys, s, result.seconds))
    print()
    print(table(rows, list(rows[0])))
    print()
    print(table(_means(rows), ["half", "setting", "verdict", "faces detected", "lowers a judge"]))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def _seeds(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _means(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per half and setting: mean verdict, mean faces detected, and whether any judge's mean is
    below PPA's (``none``) in that half."""
    judges = [k for k in rows[0] if k not in {"half", "model", "setting", "seed", "seconds"}]
    out: list[dict[str, object]] = []
    for half in dict.fromkeys(str(r["half"]) for r in rows):
        mean: dict[str, dict[str, float]] = {}
        for setting in dict.fromkeys(str(r["setting"]) for r in rows):
            sel = [r for r in rows if r["half"] == half and r["setting"] == setting]
            mean[setting] = {j: float(np.mean([float(str(r[j])) for r in sel])) for j in judges}
        base = mean.get("none")
        for setting, m in mean.items():
            lowers = (
                ""
                if base is None
                else ", ".join(
                    j for j in judges if j not in {"verdict", "faces detected"} and m[j] < base[j]
                )
            )
            out.append(
                {
                    "half": half,
                    "setting": setting,
                    "verdict": f"{m['verdict']:.3f}",
                    "faces detected": f"{m['faces detected']:.3f}",
                    "lowers a judge": lowers or "no",
                }
            )
    return out


if __name__ == "__main__":
    main()
