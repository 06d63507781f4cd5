"""What each MI-FACE choice costs and buys, on the AT&T faces (46x56, all 40 identities).

Runs named variants of the attack (prior, step size, start point, stopping rule) against the
softmax-regression and MLP reference targets and prints attack accuracy (judged by the independent
evaluation model), KNN distance, SSIM, iterations and seconds. For comparison it also prints the
top-1 of a simple pixel-space judge: 1-nearest-neighbour on per-image standardised pixels over all
400 private images (correlation matching), which is far more lenient than the CNN.

    .venv/bin/python benchmarks/ablation_miface.py [--targets softmax,mlp] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from _common import faces_setup, table

from invguard.attacks import InversionRequest, MIFace
from invguard.metrics import evaluate_inversion
from invguard.targets import TorchTarget

DEFAULT = MIFace()
VARIANTS: dict[str, MIFace] = {
    "naive: GD on -log p, no prior, 1000 steps": MIFace(
        optimizer="sgd", step_size=1.0, tv_weight=0.0, l2_weight=0.0, patience=1000
    ),
    "paper: GD on 1-p, gamma 0.99, beta 100": MIFace(
        loss="probability",
        optimizer="sgd",
        step_size=0.1,
        confidence_threshold=0.99,
        tv_weight=0.0,
        l2_weight=0.0,
    ),
    "Adam, no prior": dataclasses.replace(DEFAULT, tv_weight=0.0, l2_weight=0.0),
    "Adam + TV": dataclasses.replace(DEFAULT, l2_weight=0.0),
    "Adam + L2": dataclasses.replace(DEFAULT, tv_weight=0.0),
    "default (Adam + L2 + TV)": DEFAULT,
    "default, loss 1-p": dataclasses.replace(DEFAULT, loss="probability"),
    "default, loss logit": dataclasses.replace(DEFAULT, loss="logit"),
    "default + denoise every 5": dataclasses.replace(DEFAULT, denoise_every=5),
    "default, step 0.003": dataclasses.replace(DEFAULT, step_size=0.003),
    "default, step 0.03": dataclasses.replace(DEFAULT, step_size=0.03),
    "default, random start": dataclasses.replace(DEFAULT, start="random"),
    "default, stop at confidence 0.99": dataclasses.replace(DEFAULT, confidence_threshold=0.99),
    "default, patience 300": dataclasses.replace(DEFAULT, patience=300),
}


def _standardise(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    flat = flat - flat.mean(1, keepdims=True)
    out: np.ndarray = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)
    return out


def pixel_judge_top1(
    recons: np.ndarray, classes: np.ndarray, x: np.ndarray, y: np.ndarray
) -> float:
    """Top-1 of 1-NN on standardised pixels (maximum correlation) against all private images."""
    sims = _standardise(recons) @ _standardise(x).T
    return float((y[sims.argmax(1)] == classes).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="softmax,mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="run variants whose name contains this")
    args = parser.parse_args()
    archs = tuple(args.targets.split(","))
    data, targets, evaluator = faces_setup(archs)
    all_x, all_y = data.all_images()
    rows: list[dict[str, object]] = []
    for name, attack in VARIANTS.items():
        if args.only and args.only not in name:
            continue
        for arch in archs:
            target = TorchTarget(targets[arch].model, input_shape=data.image_shape)
            result = attack.run(target, InversionRequest(), rng=args.seed)
            m = evaluate_inversion(result, evaluator, data).summary()
            rows.append(
                {
                    "variant": name,
                    "target": arch,
                    "top-1": f"{m['top1_accuracy']:.3f}",
                    "top-5": f"{m['top5_accuracy']:.3f}",
                    "pixel-judge top-1": f"{pixel_judge_top1(result.reconstructions, result.classes, all_x, all_y):.3f}",
                    "KNN dist": f"{m['knn_distance']:.1f}",
                    "SSIM": f"{m['ssim']:.3f}",
                    "target conf": f"{m['target_confidence']:.3f}",
                    "mean iters": f"{result.iterations.mean():.0f}",
                    "seconds": f"{result.seconds:.2f}",
                }
            )
            print(rows[-1], flush=True)
    print()
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
