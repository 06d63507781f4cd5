"""Black-box, learned and label-only model inversion on the AT&T faces: accuracy against queries.

For each access level an attacker may get from a prediction API (full probabilities, top-3 scores,
scores rounded to 2 decimals, labels only) prints the attack top-1 / top-5 accuracy (judged by the
independent evaluation model) reached within a query budget, beside the white-box MI-FACE accuracy
on the same target, as a table, and saves the curves as a PNG plot.

* 40 identities, faces MLP (seed 0): MI-FACE by zeroth-order gradients (``miface-zo``) with full,
  top-3 and rounded scores. Goal: with full scores, reach the white-box top-1 within 50,000
  queries for all 40 identities.
* 30 private identities (s1-s30), faces MLP (seed 0), the attacker holding the 100 images of the
  other 10 (``att-faces-public10``): ``miface-zo`` with full scores, learned inversion (Yang et
  al. 2019) with full, top-3 and rounded scores, and boundary repulsion with labels only.

A run with budget B is the prefix of the run without a budget (same seed), stopped at the first
batch that would exceed B; each point of a curve is such a run.

    INVGUARD_CACHE_DIR=... .venv/bin/python benchmarks/bench_blackbox.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import cache, table

from invguard.attacks import (
    Attack,
    BoundaryRepulsion,
    InversionRequest,
    LearnedInversion,
    MIFace,
    MIFaceZO,
)
from invguard.data import ImageDataset, load_att_faces, load_att_faces_with_auxiliary
from invguard.defenses import LabelOnly, RoundScores, TopK
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models import train_evaluation_model, train_target
from invguard.targets import Target, TorchTarget

ACCESS: dict[str, Callable[[Target], Target]] = {
    "full scores": lambda t: t,
    "top-3": lambda t: TopK(k=3).wrap(t),
    "rounded (2 dp)": lambda t: RoundScores(decimals=2).wrap(t),
    "label only": lambda t: LabelOnly().wrap(t),
}


def run_one(
    setting: str,
    attack: Attack,
    access: str,
    budget: int | None,
    model: torch.nn.Module,
    data: ImageDataset,
    evaluator: Evaluator,
    auxiliary: np.ndarray | None = None,
) -> dict[str, Any]:
    base = TorchTarget(model, input_shape=data.image_shape, query_budget=budget)
    target = ACCESS[access](base)
    started = time.perf_counter()
    result = attack.run(target, InversionRequest(auxiliary=auxiliary), rng=0)
    seconds = time.perf_counter() - started
    s = evaluate_inversion(result, evaluator, data).summary()
    row = {
        "setting": setting,
        "attack": attack.name,
        "access": access,
        "budget": "-" if budget is None else f"{budget:,}",
        "queries": f"{result.queries:,}",
        "top1": f"{s['top1_accuracy']:.3f}",
        "top5": f"{s['top5_accuracy']:.3f}",
        "seconds": f"{seconds:.1f}",
        "_queries": result.queries,
        "_top1": s["top1_accuracy"],
    }
    print(
        f"  {setting:9s} {attack.name:9s} {access:14s} budget {row['budget']:>7s}: "
        f"top-1 {row['top1']} top-5 {row['top5']} with {row['queries']} queries in {seconds:.1f} s",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer budgets (a few minutes)")
    parser.add_argument("--out", type=Path, default=Path("bench-blackbox"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    c = cache()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    zo_full = [10_000, 30_000] if args.quick else [5_000, 10_000, 20_000, 30_000, 50_000]
    zo_top3 = [50_000] if args.quick else [50_000, 100_000]
    zo_round = [50_000]  # without a budget the rounded run stops by itself after ~54,000
    copies = [20] if args.quick else [5, 20]
    brep = [10_000] if args.quick else [2_000, 5_000, 10_000, 20_000]

    rows: list[dict[str, Any]] = []
    white: dict[str, dict[str, Any]] = {}

    # 1. all 40 identities: no disjoint public faces, so the score attack only
    faces = load_att_faces()
    mlp = train_target(faces, "mlp", cache=c).model
    judge = Evaluator(train_evaluation_model(faces, cache=c).model)
    print("40 identities, faces MLP:", flush=True)
    white["40 ids"] = run_one("40 ids", MIFace(), "full scores", None, mlp, faces, judge)
    for b in zo_full:
        rows.append(run_one("40 ids", MIFaceZO(), "full scores", b, mlp, faces, judge))
    for access, budgets in (("top-3", zo_top3), ("rounded (2 dp)", zo_round)):
        for b in budgets:
            rows.append(run_one("40 ids", MIFaceZO(), access, b, mlp, faces, judge))

    # 2. 30 private identities, the other 10 as the attacker's auxiliary faces
    private, aux = load_att_faces_with_auxiliary()
    mlp30 = train_target(private, "mlp", cache=c).model
    judge30 = Evaluator(train_evaluation_model(private, cache=c).model)
    print("30 private identities, faces MLP, 100 public faces as auxiliary data:", flush=True)
    white["30 ids"] = run_one("30 ids", MIFace(), "full scores", None, mlp30, private, judge30)
    rows.append(run_one("30 ids", MIFaceZO(), "full scores", 50_000, mlp30, private, judge30, aux))
    for access in ("full scores", "top-3", "rounded (2 dp)"):
        for k in copies:
            attack: Attack = LearnedInversion(augment_copies=k)
            rows.append(run_one("30 ids", attack, access, None, mlp30, private, judge30, aux))
    for b in brep:
        attack = BoundaryRepulsion()
        rows.append(run_one("30 ids", attack, "label only", b, mlp30, private, judge30, aux))

    columns = ["setting", "attack", "access", "budget", "queries", "top1", "top5", "seconds"]
    print()
    print(table([*white.values(), *rows], columns))
    wb40 = white["40 ids"]["_top1"]
    reach = [r for r in rows if r["setting"] == "40 ids" and r["access"] == "full scores"]
    best = max(reach, key=lambda r: r["_top1"])
    met = any(r["_top1"] >= wb40 and r["_queries"] <= 50_000 for r in reach)
    print(
        f"\nGoal (full scores reach the white-box top-1 {wb40:.3f} within 50,000 queries, "
        f"40 identities): {'MET' if met else 'NOT MET'}; best black-box top-1 "
        f"{best['_top1']:.3f} with {best['_queries']:,} queries"
    )
    (args.out / "bench_blackbox.json").write_text(
        json.dumps(
            {
                "white_box": {k: v["_top1"] for k, v in white.items()},
                "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
            },
            indent=2,
        )
    )
    plot(rows, white, args.out / "bench_blackbox.png")
    print(f"wrote {args.out / 'bench_blackbox.png'} and {args.out / 'bench_blackbox.json'}")


def plot(rows: list[dict[str, Any]], white: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, setting in zip(axes, ("40 ids", "30 ids"), strict=True):
        mine = [r for r in rows if r["setting"] == setting]
        for key in dict.fromkeys((r["attack"], r["access"]) for r in mine):
            pts = sorted(
                (r["_queries"], r["_top1"]) for r in mine if (r["attack"], r["access"]) == key
            )
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", label=f"{key[0]}, {key[1]}")
        ax.axhline(white[setting]["_top1"], color="k", ls="--", label="white-box MI-FACE")
        ax.axhline(1.0 / (40 if setting == "40 ids" else 30), color="grey", ls=":", label="chance")
        if setting == "40 ids":
            ax.axvline(50_000, color="tab:red", ls=":", label="goal: 50,000 queries")
        ax.set_xscale("log")
        ax.set_xlabel("queries")
        ax.set_title(f"faces MLP, {setting}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", framealpha=0.9)
    axes[0].set_ylabel("attack top-1 (evaluation model)")
    axes[0].set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
