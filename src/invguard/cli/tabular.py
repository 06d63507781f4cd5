"""``invguard tabular ...``: attribute inference on tabular models, from the command line.

Register with ``add_tabular_parser(sub)`` on the top-level sub-parsers; each sub-command sets
``handler``. Errors the user can fix are :class:`~invguard.errors.InvGuardError` (one line, exit
2 at the top level). Heavy modules load only when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from invguard.cli._common import (
    EXIT_FINDINGS,
    EXIT_OK,
    SubParsers,
    add_format_options,
    check_format,
    emit,
    exit_codes,
    note,
)
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without numpy or sklearn.

ARCHS: tuple[str, ...] = ("logreg", "tree", "forest", "gbdt", "mlp")
DATASETS: tuple[str, ...] = ("adult",)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        choices=DATASETS,
        default="adult",
        help="built-in data set (default adult: the UCI census extract shipped with InvGuard)",
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
        epilog=exit_codes(
            "an attack infers the attribute significantly better than the imputation baseline "
            "(one-sided McNemar p < 0.01, a finding at or above --fail-on), or the endpoint could "
            "not be reached (an incomplete report is written)"
        ),
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
    a.add_argument(
        "--fail-on",
        choices=("critical", "high", "medium", "low", "none"),
        default="low",
        help="exit 1 when the leak's finding is at or above this severity (default low: any "
        "significant leak; none: never)",
    )
    add_format_options(a)
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
    """Attack one sensitive attribute of a model's training rows (the assessment's tabular job);
    exit 1 when the leak is significant (at or above ``--fail-on``) or the endpoint is down."""
    from invguard.assess.availability import endpoint_unavailable
    from invguard.errors import InvGuardError
    from invguard.tabular.pipeline import run_tabular
    from invguard.targets.http import HttpTarget

    fmt = check_format(args, "tabular assess", ("table", "json", "markdown"))
    from invguard.targets.http import redact_url

    spec = _spec(args)
    model_name = (
        args.model.name
        if args.model is not None
        else redact_url(args.url)
        if args.url is not None
        else f"reference {args.arch}"
    )
    factory = None
    if args.url is not None:

        def factory(scenario: Any) -> Any:
            n, k = scenario.encoder.n_features, scenario.num_classes
            return HttpTarget(args.url, num_classes=k, input_shape=(n,))

    try:
        run = run_tabular(spec, target_factory=factory, model_name=model_name)
    except InvGuardError as exc:
        if args.url is None or not endpoint_unavailable(exc):
            raise
        return _incomplete(args, model_name, str(exc))
    passed, reason = _gate(run, model_name, args.fail_on)
    return _report(args, fmt, run, passed, reason)


def _gate(run: Any, model_name: str, fail_on: str) -> tuple[bool, str]:
    """The assessment's gate on this run: its finding (the strongest attack against imputation,
    significant at p < 0.01) at or above ``fail_on``."""
    from invguard.assess.findings import tabular_finding
    from invguard.assess.records import gate_findings
    from invguard.catalog.attacks import TABULAR_ATTACKS

    info = TABULAR_ATTACKS["attribute"]
    finding, leak = tabular_finding(
        system=model_name,
        rule_id=info.rule_id,
        title=info.title,
        attack=info.name,
        access=info.access,
        outcomes=[{"headline": run.headline()}],
    )
    passed, reason = gate_findings([finding], fail_on)
    significance = "significant" if leak.significant else "not significant"
    return passed, f"{reason}; leak {significance} (p = {leak.p_value:.2g}, lift {leak.lift:.2f})"


def _report(args: argparse.Namespace, fmt: str, run: Any, passed: bool, reason: str) -> int:
    """Write the report folder; print the table, the report's JSON or its Markdown."""
    import json

    from invguard.report.tabular import write_tabular_html
    from invguard.tabular.report import format_assessment, write_report

    json_path, md_path = write_report(run.assessments, args.out, meta=run.meta)
    html_path = write_tabular_html(json_path)
    gate_line = f"gate (fail on {args.fail_on}): {'passed' if passed else 'FAILED'}: {reason}"
    report_line = f"report: {json_path}, {md_path} and {html_path}"
    if fmt == "json":
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        doc["gate"] = {"fail_on": args.fail_on, "passed": passed, "reason": reason}
        emit(args, json.dumps(doc, indent=1))
    elif fmt == "markdown":
        emit(args, md_path.read_text(encoding="utf-8").rstrip() + f"\n\n{gate_line}")
    else:
        tables = [format_assessment(a) + "\n" for a in run.assessments]
        emit(args, "\n".join([*tables, report_line, gate_line]))
    if fmt != "table":
        note(args, f"{report_line}\n{gate_line}")
    return EXIT_OK if passed else EXIT_FINDINGS


def _incomplete(args: argparse.Namespace, model_name: str, reason: str) -> int:
    """The endpoint could not be reached: an incomplete report that says why, and exit 1."""
    import json

    from invguard.report.tabular import write_tabular_html
    from invguard.tabular.report import write_report

    meta = {"model": model_name, "status": "incomplete", "error": reason}
    json_path, md_path = write_report([], args.out, meta=meta)
    html_path = write_tabular_html(json_path)
    gate = {"fail_on": args.fail_on, "passed": False, "reason": f"assessment incomplete: {reason}"}
    fmt = args.format
    if fmt == "json":
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        emit(args, json.dumps({**doc, "gate": gate}, indent=1))
    elif fmt == "markdown":
        emit(args, md_path.read_text(encoding="utf-8").rstrip() + f"\n\ngate: FAILED: {reason}")
    else:
        emit(args, f"{model_name}: not assessed: {reason}\ngate: FAILED: {gate['reason']}")
    note(args, f"incomplete report: {json_path}, {md_path} and {html_path}")
    return EXIT_FINDINGS


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
