"""InvGuard's attribute inference beside IBM ART's ``AttributeInferenceBlackBox``: same model, rows.

    .venv/bin/python benchmarks/compare_art_attribute.py [--attributes sex,race]
        [--archs tree,mlp] [--rows N] [--art-models nn,gb] [--seed 0]

Both tools attack the same reference model's training rows (members of the documented 70% split;
all of them unless ``--rows``) and learn from the same auxiliary rows (half of the held-out rows,
whose sensitive values the attacker knows). ART (1.20) is used as documented: its attack model is
fitted on the auxiliary rows with their labels, and ``infer`` gets the known features, the true
labels and the model's predicted label for each target row (``pred``): note that this gives ART
the model's answer on the *true* record, which InvGuard's attacks never see (they query the
candidates only). Times are wall-clock seconds for everything the attack does, queries included;
ART's ``nn`` model draws from torch's global generator, which is seeded inside
``torch.random.fork_rng`` so that runs repeat without changing the global state.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.tabular._threads import limit_threads
from invguard.tabular.attacks import (
    ConfidenceScoreAttack,
    FredriksonMAP,
    ImputationBaseline,
)
from invguard.tabular.data import load_adult
from invguard.tabular.metrics import attribute_metrics, mcnemar_test
from invguard.tabular.models import TABULAR_ARCHS, tabular_target, train_tabular_model
from invguard.tabular.report import markdown_table
from invguard.tabular.scenario import TabularScenario, build_scenario


def art_estimator(model: Any, n_features: int, num_classes: int) -> Any:
    """The ART wrapper of a scikit-learn or torch model."""
    import torch

    if isinstance(model, torch.nn.Module):
        from art.estimators.classification import PyTorchClassifier

        return PyTorchClassifier(
            model=model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=(n_features,),
            nb_classes=num_classes,
        )
    from art.estimators.classification import SklearnClassifier

    return SklearnClassifier(model=model)


def run_art(
    estimator: Any,
    sc: TabularScenario,
    x_target: NDArray[np.float32],
    y_target: NDArray[np.int64],
    model_type: str,
    seed: int,
) -> tuple[NDArray[np.int64], float]:
    """ART's black-box attribute inference; the inferred value indices and the seconds taken."""
    import torch
    from art.attacks.inference.attribute_inference import AttributeInferenceBlackBox

    a = sc.attribute
    aux = sc.auxiliary()
    k = sc.num_classes
    start = time.perf_counter()
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        attack = AttributeInferenceBlackBox(
            estimator, attack_feature=slice(a.start, a.stop), attack_model_type=model_type
        )
        attack.fit(aux.x, y=np.eye(k)[aux.y])
        pred = estimator.predict(x_target).argmax(axis=1).reshape(-1, 1)
        known = np.delete(x_target, np.arange(a.start, a.stop), axis=1)
        inferred = np.asarray(attack.infer(known, y=np.eye(k)[y_target], pred=pred))
    seconds = time.perf_counter() - start
    return inferred.argmax(axis=1).astype(np.int64), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attributes", default="sex,race")
    parser.add_argument("--archs", default="tree,mlp")
    parser.add_argument("--art-models", default="nn,gb", help="ART attack_model_type values")
    parser.add_argument("--rows", type=int, default=None, help="members to attack (default all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    archs = [a for a in args.archs.split(",") if a]
    for a in archs:
        if a not in TABULAR_ARCHS:
            parser.error(f"unknown architecture {a!r}")
    data = load_adult()
    header = ["attribute", "model", "tool: attack", "accuracy", "G-mean", "MCC", "p", "seconds"]
    table: list[list[str]] = []
    with limit_threads(1):
        for attribute in [a for a in args.attributes.split(",") if a]:
            sc = build_scenario(data, attribute, seed=args.seed)
            k = sc.num_classes
            request, truth = sc.request("members", max_rows=args.rows, seed=args.seed)
            rows = sc.rows("members", max_rows=args.rows, seed=args.seed)
            x_target = sc.x[rows]  # the true rows, for ART's ``pred`` only
            for arch in archs:
                trained = train_tabular_model(
                    arch, sc.train_x, sc.train_y, num_classes=k, seed=args.seed
                )
                results: list[tuple[str, NDArray[np.int64], float]] = []
                for model_type in [m for m in args.art_models.split(",") if m]:
                    est = art_estimator(trained.model, sc.encoder.n_features, k)
                    pred, secs = run_art(est, sc, x_target, sc.y[rows], model_type, args.seed)
                    results.append((f"ART: black-box ({model_type})", pred, secs))
                for attack in (
                    ImputationBaseline(),
                    FredriksonMAP(prior="imputation"),
                    ConfidenceScoreAttack(),
                ):
                    target = tabular_target(
                        trained.model, n_features=sc.encoder.n_features, num_classes=k
                    )
                    start = time.perf_counter()
                    res = attack.run(target, request, rng=args.seed)
                    results.append(
                        (f"InvGuard: {res.label}", res.predictions, time.perf_counter() - start)
                    )
                art_best = max(
                    (r for r in results if r[0].startswith("ART")),
                    key=lambda r: float(np.mean(r[1] == truth)),
                )
                for name, pred, secs in results:
                    m = attribute_metrics(truth, pred, sc.attribute.k)
                    p = ""
                    if name.startswith("InvGuard"):
                        test = mcnemar_test(pred == truth, art_best[1] == truth)
                        p = "<1e-4" if test.p_value < 1e-4 else f"{test.p_value:.3g}"
                    table.append(
                        [
                            attribute,
                            arch,
                            name,
                            f"{m.accuracy:.3f}",
                            f"{m.g_mean:.3f}",
                            f"{m.mcc:.3f}",
                            p,
                            f"{secs:.2f}",
                        ]
                    )
                print(f"done: {attribute} / {arch} ({request.n} rows)", flush=True)
    print()
    print("p: one-sided exact McNemar, InvGuard attack more accurate than the best ART attack")
    print(markdown_table(header, table))


if __name__ == "__main__":
    main()
