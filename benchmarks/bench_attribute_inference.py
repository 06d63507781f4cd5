"""Attribute inference on Adult: every attack against every reference model, beside the baselines.

    .venv/bin/python benchmarks/bench_attribute_inference.py [--attributes sex,race]
        [--archs logreg,tree,gbdt,mlp] [--rows N] [--seed 0] [--json FILE]

For each sensitive attribute and model (trained on the documented 70% split with the attribute
as a feature), all attacks run on the model's training rows (members; all of them unless
``--rows``) and again on held-out rows (non-members). The table gives, for members: accuracy,
G-mean and MCC; the accuracy advantage over the prior (majority) baseline (the G-mean and MCC
advantages over it are the values themselves: the prior's are 0); the accuracy and MCC advantages
over the imputation baseline, with the one-sided exact McNemar p-value; and, for non-members, the
accuracy advantage over imputation. A leak of the *training data* shows as an advantage on members
that non-members do not have. The last model of each attribute is a negative control: a fully
grown tree trained with the attribute shuffled across its training rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from invguard.tabular._threads import limit_threads
from invguard.tabular.attacks import ConfidenceScoreAttack
from invguard.tabular.data import load_adult
from invguard.tabular.models import TABULAR_ARCHS, tabular_target, train_tabular_model
from invguard.tabular.report import (
    TabularAssessment,
    default_attacks,
    markdown_table,
    run_assessment,
)
from invguard.tabular.scenario import build_scenario, shuffle_sensitive

NEGATIVE = "tree, attribute shuffled (negative control)"


def _p(v: float | None) -> str:
    if v is None:
        return ""
    return "<1e-4" if v < 1e-4 else f"{v:.3g}"


def _rows(model: str, members: TabularAssessment, nonmembers: TabularAssessment) -> list[list[str]]:
    out = []
    for m, n in zip(members.rows, nonmembers.rows, strict=True):
        out.append(
            [
                model,
                m.label.replace("baseline: ", "(baseline) "),
                f"{m.metrics.accuracy:.3f}",
                f"{m.metrics.g_mean:.3f}",
                f"{m.metrics.mcc:.3f}",
                "" if m.vs_prior is None else f"{m.vs_prior['accuracy']:+.3f}",
                "" if m.vs_imputation is None else f"{m.vs_imputation['accuracy']:+.3f}",
                "" if m.vs_imputation is None else f"{m.vs_imputation['mcc']:+.3f}",
                _p(None if m.mcnemar_imputation is None else m.mcnemar_imputation.p_value),
                "" if n.vs_imputation is None else f"{n.vs_imputation['accuracy']:+.3f}",
                f"{m.seconds:.2f}",
            ]
        )
    return out


HEADER = [
    "model",
    "attack",
    "accuracy",
    "G-mean",
    "MCC",
    "acc. vs prior",
    "acc. vs imp.",
    "MCC vs imp.",
    "p (vs imp.)",
    "non-members vs imp.",
    "seconds",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attributes", default="sex,race")
    parser.add_argument("--archs", default="logreg,tree,gbdt,mlp")
    parser.add_argument("--rows", type=int, default=None, help="members to attack (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-negative-control", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    args = parser.parse_args()
    archs = [a for a in args.archs.split(",") if a]
    for a in archs:
        if a not in TABULAR_ARCHS:
            parser.error(f"unknown architecture {a!r}; choose from {', '.join(TABULAR_ARCHS)}")
    data = load_adult()
    dump: dict[str, Any] = {"seed": args.seed, "attributes": {}}
    start = time.perf_counter()
    with limit_threads(1):
        for attribute in [a for a in args.attributes.split(",") if a]:
            sc = build_scenario(data, attribute, seed=args.seed)
            k = sc.num_classes
            members, truth_m = sc.request("members", max_rows=args.rows, seed=args.seed)
            nonmembers, truth_n = sc.request("non-members", seed=args.seed)
            held = np.concatenate([sc.split.auxiliary, sc.split.evaluation])
            models: list[tuple[str, np.ndarray[Any, Any], str]] = [
                (arch, sc.train_x, arch) for arch in archs
            ]
            if not args.no_negative_control:
                shuffled = shuffle_sensitive(
                    sc.train_x, sc.attribute, np.random.default_rng(args.seed)
                )
                models.append((NEGATIVE, shuffled, "tree"))
            table: list[list[str]] = []
            model_lines = []
            dump["attributes"][attribute] = {}
            for name, x_train, arch in models:
                trained = train_tabular_model(
                    arch, x_train, sc.train_y, num_classes=k, seed=args.seed
                )
                target = tabular_target(
                    trained.model, n_features=sc.encoder.n_features, num_classes=k
                )
                acc_tr = float(np.mean(target.predict(sc.train_x).argmax(1) == sc.train_y))
                acc_ho = float(np.mean(target.predict(sc.x[held]).argmax(1) == sc.y[held]))
                model_lines.append(
                    f"  {name}: accuracy {acc_tr:.3f} train / {acc_ho:.3f} held out, "
                    f"trained in {trained.seconds:.1f} s"
                )
                attacks = [*default_attacks(target), ConfidenceScoreAttack(training="self")]
                am = run_assessment(
                    target, members, truth_m, attacks=attacks, rng=args.seed, model=name
                )
                an = run_assessment(
                    target,
                    nonmembers,
                    truth_n,
                    attacks=attacks,
                    rng=args.seed,
                    model=name,
                    population="non-members",
                )
                table += _rows(name, am, an)
                dump["attributes"][attribute][name] = {
                    "train_accuracy": acc_tr,
                    "held_out_accuracy": acc_ho,
                    "members": am.to_dict(),
                    "non_members": an.to_dict(),
                }
            counts = ", ".join(
                f"{v} {c}"
                for v, c in zip(
                    sc.attribute.values,
                    np.bincount(truth_m, minlength=sc.attribute.k).tolist(),
                    strict=True,
                )
            )
            print(f"## '{attribute}': {members.n} members ({counts}), {nonmembers.n} non-members")
            print("\n".join(model_lines))
            print(markdown_table(HEADER, table))
            print(flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(dump, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
