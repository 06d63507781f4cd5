"""MI-FACE speed on the AT&T faces: all 40 identities inverted in one batch.

For each reference target prints: seconds to invert all 40 identities with the default settings,
iterations, attack top-1 (judged by the evaluation model), and the cost of one attack iteration
relative to one plain forward+backward pass of the same 40-image batch, both measured in this run
(goal: ratio <= 1.5; goal: the MLP in under 5 s on 2 cores).

    .venv/bin/python benchmarks/bench_miface.py [--targets softmax,mlp] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from _common import faces_setup, table

from invguard.attacks import InversionRequest, MIFace
from invguard.metrics import evaluate_inversion
from invguard.targets import TorchTarget


def plain_forward_backward(model: torch.nn.Module, x: torch.Tensor, iters: int) -> float:
    """Seconds per plain forward + input-gradient backward of the whole batch."""
    y = torch.arange(x.shape[0])
    for p in model.parameters():
        p.requires_grad_(False)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(iters):
            xg = x.detach().requires_grad_(True)
            out = torch.log_softmax(model(xg), 1)[torch.arange(len(y)), y].sum()
            torch.autograd.grad(out, xg)
        best = min(best, (time.perf_counter() - start) / iters)
    for p in model.parameters():
        p.requires_grad_(True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="softmax,mlp")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fixed-iters", type=int, default=200)
    args = parser.parse_args()
    archs = tuple(args.targets.split(","))
    data, targets, evaluator = faces_setup(archs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows: list[dict[str, object]] = []
    attack = MIFace()
    fixed = dataclasses.replace(
        attack, max_iterations=args.fixed_iters, patience=args.fixed_iters, min_improvement=0.0
    )
    for arch in archs:
        model = targets[arch].model
        # full default run (best of repeats)
        seconds, result = float("inf"), None
        for _ in range(args.repeats):
            target = TorchTarget(model, input_shape=data.image_shape)
            r = attack.run(target, InversionRequest(), rng=0)
            if r.seconds < seconds:
                seconds, result = r.seconds, r
        assert result is not None
        m = evaluate_inversion(result, evaluator, data).summary()
        # per-iteration cost with the whole batch active, against a plain pass
        per_iter = min(
            fixed.run(
                TorchTarget(model, input_shape=data.image_shape), InversionRequest(), rng=0
            ).seconds
            / args.fixed_iters
            for _ in range(args.repeats)
        )
        x = torch.full((data.num_classes, *data.image_shape), 0.5)
        base = plain_forward_backward(model, x, args.fixed_iters)
        rows.append(
            {
                "target": arch,
                "identities": len(result.classes),
                "seconds (all 40)": f"{seconds:.2f}",
                "mean / max iters": f"{result.iterations.mean():.0f} / {result.iterations.max()}",
                "queries": result.queries,
                "top-1": f"{m['top1_accuracy']:.3f}",
                "top-5": f"{m['top5_accuracy']:.3f}",
                "ms / iter (40 active)": f"{1e3 * per_iter:.2f}",
                "ms / plain fwd+bwd": f"{1e3 * base:.2f}",
                "ratio": f"{per_iter / base:.2f}",
            }
        )
        print(rows[-1], flush=True)
    print()
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
