"""``invguard tabular ...``: attribute inference on tabular models, from the command line.

Register with ``add_tabular_parser(sub)`` on the top-level sub-parsers; each sub-command sets
``handler``. Errors the user can fix are :class:`~invguard.errors.InvGuardError` (one line, exit
2 at the top level). Heavy modules load only when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from invguard.cli._common import EXIT_OK, SubParsers
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without numpy, pandas or sklearn.

ARCHS: tuple[str, ...] = ("logreg", "tree", "forest", "gbdt", "mlp")
DATASETS: tuple[str, ...] = ("adult",)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        choices=DATASETS,
        default="adult",
        help="built-in data set (default adult: the UCI census extract shipped with mglearn)",
    )
    src.add_argument("--csv", type=Path, help="your own data: a CSV file with a header row")
    p.add_argument("--label", help="the label column of --csv")
    p.add_argument(
        "--categorical",
        default="",
        help="comma-separated --csv columns to treat as categorical even if they are numbers",
    )
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")


def add_tabular_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``tabular`` command group (``assess``, ``train``) to top-level sub-parsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "tabular",
        help="attribute inference on tabular models (Adult or your CSV)",
        description="Infer a sensitive attribute of a tabular model's training records "
        "(Fredrikson et al. 2014/2015, Mehnaz et al. 2022) and compare every attack with the "
        "prior and imputation baselines.",
    )
    tsub = p.add_subparsers(dest="tabular_command", metavar="TABULAR_COMMAND")
    tsub.required = True

    a = tsub.add_parser(
        "assess",
        help="attack a model's sensitive attribute; print a table, write JSON, Markdown and HTML",
    )
    _add_data_args(a)
    a.add_argument("--sensitive", required=True, help="the categorical column to infer")
    tgt = a.add_mutually_exclusive_group(required=True)
    tgt.add_argument("--model", type=Path, help="a saved model: .skops or .onnx")
    tgt.add_argument("--arch", choices=ARCHS, help="train a reference model of this kind")
    tgt.add_argument("--url", help="an HTTP prediction endpoint (POST {'inputs': [...]})")
    a.add_argument(
        "--encoding",
        type=Path,
        help="the model's encoding JSON (default: <model>.encoding.json beside --model, else the "
        "documented encoding fitted on the training split)",
    )
    a.add_argument(
        "--rows", type=int, default=5000, help="attack at most this many training rows (5000)"
    )
    a.add_argument(
        "--non-members",
        action="store_true",
        help="also attack held-out rows (the member/non-member contrast)",
    )
    a.add_argument(
        "--out",
        type=Path,
        default=Path("invguard-tabular"),
        help="report folder (invguard-tabular)",
    )
    a.set_defaults(handler=cmd_tabular_assess)

    t = tsub.add_parser(
        "train", help="train a reference tabular model and save it with its encoding"
    )
    _add_data_args(t)
    t.add_argument("--arch", choices=ARCHS, required=True)
    t.add_argument(
        "--out", type=Path, required=True, help="model file: .skops (scikit-learn) or .onnx (mlp)"
    )
    t.set_defaults(handler=cmd_tabular_train)
    return p


def _load_data(args: argparse.Namespace) -> Any:
    from invguard.tabular.data import load_adult, load_csv

    cats = [c.strip() for c in str(args.categorical or "").split(",") if c.strip()]
    if args.csv is not None:
        if not args.label:
            raise InvalidParameterError("--csv needs --label: the name of the label column")
        return load_csv(args.csv, label=args.label, categorical=cats)
    if args.label or cats:
        raise InvalidParameterError("--label and --categorical apply to --csv only")
    return load_adult()


def _spec(args: argparse.Namespace) -> Any:
    """The run spec of ``tabular assess`` (flag errors name the flags)."""
    from invguard.errors import InvalidParameterError, check_int
    from invguard.tabular.pipeline import TabularSpec

    check_int("rows", args.rows, minimum=1)
    check_int("seed", args.seed, minimum=0)
    cats = tuple(c.strip() for c in str(args.categorical or "").split(",") if c.strip())
    if args.csv is not None and not args.label:
        raise InvalidParameterError("--csv needs --label: the name of the label column")
    if args.csv is None and (args.label or cats):
        raise InvalidParameterError("--label and --categorical apply to --csv only")
    return TabularSpec(
        sensitive=args.sensitive,
        csv=args.csv,
        label=args.label if args.csv is not None else None,
        categorical=cats,
        arch=args.arch,
        model=args.model,
        encoding=args.encoding,
        rows=args.rows,
        non_members=args.non_members,
        seed=args.seed,
    )


def cmd_tabular_assess(args: argparse.Namespace) -> int:
    """Attack one sensitive attribute of a model's training rows (the assessment's tabular job)."""
    from invguard.tabular.pipeline import run_tabular
    from invguard.tabular.report import format_assessment, write_report
    from invguard.targets.http import HttpTarget

    spec = _spec(args)
    model_name = args.model.name if args.model is not None else args.url or f"reference {args.arch}"
    factory = None
    if args.url is not None:

        def factory(scenario: Any) -> Any:
            n, k = scenario.encoder.n_features, scenario.num_classes
            return HttpTarget(args.url, num_classes=k, input_shape=(n,))

    run = run_tabular(spec, target_factory=factory, model_name=model_name)
    for a in run.assessments:
        print(format_assessment(a))
        print()
    json_path, md_path = write_report(run.assessments, args.out, meta=run.meta)
    from invguard.report.tabular import write_tabular_html

    html_path = write_tabular_html(json_path)
    print(f"report: {json_path}, {md_path} and {html_path}")
    return EXIT_OK


def cmd_tabular_train(args: argparse.Namespace) -> int:
    """Train a reference model on the documented training split and save it with its encoding."""
    import numpy as np

    from invguard.errors import check_int
    from invguard.tabular.data import TabularEncoder, split_rows
    from invguard.tabular.models import save_tabular_model, tabular_target, train_tabular_model

    check_int("seed", args.seed, minimum=0)
    data = _load_data(args)
    split = split_rows(data.labels(), seed=args.seed)
    encoder = TabularEncoder.fit(data, split.train)
    x = encoder.encode(data.frame)
    y = encoder.encode_labels(data.frame)
    k = len(encoder.classes)
    trained = train_tabular_model(
        args.arch, x[split.train], y[split.train], num_classes=k, seed=args.seed
    )
    target = tabular_target(trained.model, n_features=encoder.n_features, num_classes=k)
    held = np.concatenate([split.auxiliary, split.evaluation])
    acc_train = float(np.mean(target.predict(x[split.train]).argmax(axis=1) == y[split.train]))
    acc_held = float(np.mean(target.predict(x[held]).argmax(axis=1) == y[held]))
    model_path, enc_path = save_tabular_model(trained.model, args.out, encoder)
    print(
        f"{args.arch} on {data.name}: {len(split.train)} training rows, {encoder.n_features} "
        f"features, accuracy {acc_train:.3f} (train) / {acc_held:.3f} (held out), "
        f"{trained.seconds:.1f} s"
    )
    print(f"model: {model_path}  encoding: {enc_path}")
    return EXIT_OK
