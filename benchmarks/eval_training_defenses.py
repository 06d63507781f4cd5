"""Training-time defences on the AT&T faces: how much leakage they remove, and at what accuracy.

For each defence and a few parameter values, a defended target is trained (or loaded from the model
cache) on the private training images (images 1-7 of every identity, 46x56), attacked with MI-FACE
(measured defaults, all identities in one batch) and judged by the reference evaluation model. Each
defended row is compared with the undefended reference target of the same architecture and recipe
(``train_target``): accuracy drop = test accuracy lost, leakage drop = attack top-1 / top-5 lost,
KNN rise = how much farther the reconstructions are from the private images (higher is better for
the defender).

Transfer learning (TL-DMI) needs public data of other people: it runs on the 30-identity split
(s1-s30 private; pre-training on all 100 images of s31-s40, labelled by identity), against its own
undefended baseline and its own evaluation model trained on s1-s30.

    .venv/bin/python benchmarks/eval_training_defenses.py \
        [--only label-smoothing,dp-sgd,mid,bido,transfer-learning] [--archs mlp,softmax] \
        [--seeds 0,1,2] [--threads 1]

With three seeds it trains 93 models: about 21 minutes on one core the first time (DP-SGD on the
MLP's 2.6M weights takes 2-4 minutes a model), about 5 minutes once they are cached. On a machine
whose cores are shared, ``--threads 1`` (or ``OMP_NUM_THREADS=1``) is much faster than two threads.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _common import cache, table

from invguard.attacks import InversionRequest, MIFace
from invguard.data import ImageDataset, load_att_faces, load_att_faces_with_auxiliary
from invguard.defenses.training import (
    DPSGD,
    MID,
    BiDO,
    LabelSmoothing,
    TrainingDefense,
    TransferLearning,
    load_att_faces_public,
)
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models import train_evaluation_model, train_target
from invguard.targets import TorchTarget


def grid(arch: str) -> list[TrainingDefense]:
    """The defences and parameter values measured for ``arch`` on the 40 identities."""
    out: list[TrainingDefense] = [
        LabelSmoothing(alpha=0.1),
        LabelSmoothing(alpha=-0.1),
        LabelSmoothing(alpha=-0.5),
        LabelSmoothing(alpha=-1.0),
        LabelSmoothing(alpha=-2.0),
        LabelSmoothing(alpha=-0.3, schedule="constant"),
    ]
    if arch == "softmax":
        out += [DPSGD(epsilon=e) for e in (1.0, 8.0, 100.0, 1000.0)]
    else:  # per-sample gradients of the MLP's 2.6M weights: ~4 min per model on one core
        out += [DPSGD(epsilon=e) for e in (8.0, 1000.0)]
    if arch != "softmax":  # a bottleneck / hidden-layer regulariser needs a hidden layer
        out += [
            MID(beta=0.001),
            MID(beta=0.003),
            MID(beta=0.01),
            BiDO(lambda_x=0.05, lambda_y=0.5),  # the paper's weights (CelebA, GMI / KED-MI)
            BiDO(lambda_x=0.1, lambda_y=2.0),  # the paper's weights against VMI
            BiDO(lambda_x=0.5, lambda_y=0.5),
            BiDO(lambda_x=1.0, lambda_y=1.0),
        ]
    return out


TL_GRID: list[TrainingDefense] = [TransferLearning(freeze=0), TransferLearning(freeze=1)]


@dataclass
class Measured:
    test_accuracy: float
    top1: float
    top5: float
    knn: float


def attack(model: torch.nn.Module, data: ImageDataset, evaluator: Evaluator) -> Measured:
    target = TorchTarget(model, input_shape=data.image_shape)
    result = MIFace().run(target, InversionRequest(), rng=0)
    s = evaluate_inversion(result, evaluator, data).summary()
    return Measured(float("nan"), s["top1_accuracy"], s["top5_accuracy"], s["knn_distance"])


def params_text(defense: TrainingDefense) -> str:
    if isinstance(defense, LabelSmoothing):
        return f"alpha={defense.alpha:g}" + (
            ", constant" if defense.schedule == "constant" and defense.alpha < 0 else ""
        )
    if isinstance(defense, DPSGD):
        return f"eps={defense.epsilon:g}, delta={defense.delta:g}, C={defense.max_grad_norm:g}"
    if isinstance(defense, MID):
        return f"beta={defense.beta:g}"
    if isinstance(defense, BiDO):
        return f"lx={defense.lambda_x:g}, ly={defense.lambda_y:g}"
    if isinstance(defense, TransferLearning):
        return f"freeze={defense.freeze}"
    return ""


def facts_text(facts: dict[str, object]) -> str:
    if "epsilon_spent" in facts:
        return f"eps spent {facts['epsilon_spent']:.2f}, sigma {facts['noise_multiplier']:.2f}"
    if "frozen_layers" in facts:
        frozen = facts["frozen_layers"]
        assert isinstance(frozen, list)
        return f"frozen: {', '.join(frozen) or 'none'}; public acc {facts['public_train_accuracy']:.2f}"
    if "kl_nats_last_epoch" in facts:
        return f"KL {facts['kl_nats_last_epoch']:.1f} nats"
    if "hsic_xz_last_epoch" in facts:
        return f"HSIC(x,z) {facts['hsic_xz_last_epoch']:.1f}, HSIC(z,y) {facts['hsic_yz_last_epoch']:.1f}"
    return ""


def run_block(
    label: str,
    data: ImageDataset,
    arch: str,
    defenses: list[TrainingDefense],
    seeds: list[int],
    auxiliary: ImageDataset | None,
    emit: Callable[[dict[str, object]], None],
) -> None:
    c = cache()
    evaluator = Evaluator(train_evaluation_model(data, cache=c).model)
    base: list[Measured] = []
    for seed in seeds:
        t = train_target(data, arch, seed=seed, cache=c)
        m = attack(t.model, data, evaluator)
        m.test_accuracy = float(t.test_accuracy or 0.0)
        base.append(m)
    b = _mean(base)
    emit(_row(label, arch, "none (reference target)", "", b, None, "", 0.0))
    for defense in defenses:
        runs: list[Measured] = []
        facts: dict[str, object] = {}
        seconds: list[float] = []
        for seed in seeds:
            d = defense.train(data, arch, seed=seed, cache=c, auxiliary=auxiliary)
            m = attack(d.model, data, evaluator)
            m.test_accuracy = float(d.test_accuracy or 0.0)
            runs.append(m)
            facts = d.facts  # those of the last seed
            seconds.append(d.seconds)  # as measured when it was trained (cached models keep it)
        emit(
            _row(
                label,
                arch,
                defense.name,
                params_text(defense),
                _mean(runs),
                b,
                facts_text(facts),
                float(np.mean(seconds)),
            )
        )


def _mean(ms: list[Measured]) -> Measured:
    return Measured(
        float(np.mean([m.test_accuracy for m in ms])),
        float(np.mean([m.top1 for m in ms])),
        float(np.mean([m.top5 for m in ms])),
        float(np.mean([m.knn for m in ms])),
    )


def _row(
    data: str,
    arch: str,
    defense: str,
    params: str,
    m: Measured,
    base: Measured | None,
    facts: str,
    seconds: float,
) -> dict[str, object]:
    def drop(a: float, b: float) -> str:
        return f"{a - b:+.3f}"

    return {
        "data": data,
        "arch": arch,
        "defence": defense,
        "params": params,
        "test acc": f"{m.test_accuracy:.3f}",
        "top-1": f"{m.top1:.3f}",
        "top-5": f"{m.top5:.3f}",
        "KNN": f"{m.knn:.1f}",
        "acc drop": drop(base.test_accuracy, m.test_accuracy) if base else "",
        "top-1 drop": drop(base.top1, m.top1) if base else "",
        "top-5 drop": drop(base.top5, m.top5) if base else "",
        "KNN rise": f"{m.knn - base.knn:+.1f}" if base else "",
        "train s": f"{seconds:.1f}" if base else "",
        "notes": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="label-smoothing,dp-sgd,mid,bido,transfer-learning", help="defences"
    )
    parser.add_argument("--archs", default="mlp,softmax")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, averaged")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, object]] = []

    def emit(row: dict[str, object]) -> None:
        rows.append(row)
        print(row, flush=True)

    start = time.perf_counter()
    faces = load_att_faces()
    for arch in args.archs.split(","):
        chosen = [d for d in grid(arch) if d.name in only]
        if chosen:
            run_block("faces-40", faces, arch, chosen, seeds, None, emit)
    if "transfer-learning" in only and "mlp" in args.archs.split(","):
        private, _ = load_att_faces_with_auxiliary()
        run_block("faces-30 (TL)", private, "mlp", TL_GRID, seeds, load_att_faces_public(), emit)
    print()
    print(f"MI-FACE defaults, judged by the reference evaluation model; means over seeds {seeds};")
    print(
        "chance top-1 0.025 (40 identities) / 0.033 (30); drops are before - after (positive: the"
    )
    print(
        f"defence removed that much); KNN rise > 0 means farther from the private images; train s:"
        f" training time (mean). {time.perf_counter() - start:.0f} s in all"
    )
    print()
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
