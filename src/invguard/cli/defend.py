"""``invguard defend evaluate``: measure defences as leakage drop against accuracy drop.

With ``-c invguard.yaml`` it evaluates the ``defenses:`` section of each system that has one; without
a config it evaluates the built-in suite on a reference model of the built-in faces (30 private
identities, the 10 others as the attacker's public data).
"""

from __future__ import annotations

import argparse
import json
import sys
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
    markdown_table,
    note,
)
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without the assessment engine.

FLAGS = {
    "queries": "--queries",
    "max_accuracy_drop": "--max-accuracy-drop",
    "seed": "--seed",
    "training": "--training",
    "output": "--output",
}


def _parse_spec(text: str, flag: str) -> dict[str, Any]:
    """``name`` or ``name:key=value,key=value`` (values parsed as YAML scalars, without anchors
    or aliases)."""
    import yaml

    from invguard.config_yaml import RefusedYamlError, parse_yaml

    name, _, rest = text.partition(":")
    if not name:
        raise InvalidParameterError(f"{flag}: expected NAME or NAME:key=value,..., got {text!r}")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidParameterError(
                f"{flag} {text!r}: expected key=value after the name, got {item!r}"
            )
        try:
            params[key.strip()] = parse_yaml(value).data
        except (yaml.YAMLError, RefusedYamlError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InvalidParameterError(
                f"{flag} {text!r}: cannot read {item!r}: {problem}"
            ) from None
    return {"name": name.strip(), "params": params}


def builtin_config(args: argparse.Namespace) -> Any:
    """The configuration that ``defend evaluate`` without ``--config`` runs."""
    from invguard.assess.config import AssessmentConfig, ConfigError, LoadedConfig
    from invguard.assess.defend import DEFAULT_OUTPUT, DEFAULT_TRAINING

    training = [_parse_spec(t, "--training") for t in args.training] if args.training else None
    output = [_parse_spec(o, "--output") for o in args.output] if args.output else None
    if training is None and output is None:
        training, output = list(DEFAULT_TRAINING), list(DEFAULT_OUTPUT)
    system: dict[str, Any] = {
        "id": f"{args.data}-{args.arch}",
        "name": f"reference {args.arch} on {args.data}",
        "target": {"type": "pytorch", "reference": {"arch": args.arch, "seed": args.seed}},
        "data": {"builtin": args.data},
        "attacks": [{"name": "auto", "budget": {"queries": args.queries}}]
        if args.queries
        else [{"name": "auto"}],
        "defenses": {
            "max_accuracy_drop": args.max_accuracy_drop,
            "seed": args.seed,
            "queries": args.queries,
            "training": training or [],
            "output": output or [],
        },
    }
    if args.data == "att-faces-private30":
        system["auxiliary"] = {"builtin": "att-faces-public10"}
    raw = {"name": "InvGuard defence evaluation", "systems": [system]}
    from pydantic import ValidationError

    try:
        cfg = AssessmentConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        flag = next((FLAGS[p] for p in reversed(loc) if p in FLAGS), ".".join(loc))
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"defend evaluate: {flag}: {msg}") from exc
    return LoadedConfig(cfg, Path("defend-evaluate"), raw)


def _chosen_systems(args: argparse.Namespace) -> tuple[Any, list[int]]:
    """The configuration (``--config`` or the built-in one) and the indices of its systems to run."""
    from invguard.assess.config import ConfigError, load_config

    if args.config:
        if args.training or args.output:
            raise InvalidParameterError(
                "--training/--output describe the built-in run; with --config list the defences "
                "under each system's 'defenses:'"
            )
        loaded = load_config(args.config)
    else:
        loaded = builtin_config(args)
    cfg = loaded.config
    chosen = [
        i
        for i, s in enumerate(cfg.systems)
        if s.defenses is not None and (args.system is None or s.id == args.system)
    ]
    if args.system is not None and not any(s.id == args.system for s in cfg.systems):
        raise ConfigError(
            f"{loaded.path}: no system with id {args.system!r} (ids: "
            f"{', '.join(s.id for s in cfg.systems)})"
        )
    if not chosen:
        raise ConfigError(
            f"{loaded.path}: systems[*].defenses: no selected system lists defences; add a "
            "'defenses:' section (see the README) or run without --config for the built-in suite"
        )
    return loaded, chosen


def cmd_defend_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the defences of the chosen systems, write their reports and print them
    (``--format``); exit 1 when a requested defence (or an attack on one) failed."""
    from invguard.assess.availability import EndpointUnavailableError
    from invguard.assess.defend import check_defenses, evaluate_system_defenses
    from invguard.assess.history import HistoryStore
    from invguard.assess.systems import expand_attacks, prepare_system
    from invguard.models import ModelCache, default_cache_dir
    from invguard.report.defenses import write_defense_report

    fmt = check_format(args, "defend evaluate", ("table", "json", "markdown"))
    loaded, chosen = _chosen_systems(args)
    cfg = loaded.config
    cache_root = (
        Path(args.cache_dir)
        if args.cache_dir
        else (loaded.resolve(cfg.cache_dir) if cfg.cache_dir else default_cache_dir())
    )
    cache = ModelCache(cache_root)
    history = Path(args.history_db) if args.history_db else loaded.resolve(cfg.history_db)
    out_root = Path(args.out) if args.out else Path("invguard-defenses")
    prepared = []
    try:
        for i in chosen:  # check everything before the first model is trained
            system, dataset, built = prepare_system(loaded, i, cache)
            system, _ = expand_attacks(system, built, dataset)
            check_defenses(system, dataset, f"{loaded.path}: systems[{i}]")
            prepared.append((i, system, dataset, built))
    except EndpointUnavailableError as exc:
        print(f"invguard: defend evaluate: not evaluated (incomplete): {exc}", file=sys.stderr)
        return EXIT_FINDINGS

    def step(message: str) -> None:
        note(args, f"  {message}")

    results: dict[str, Any] = {}
    paths: dict[str, dict[str, Path]] = {}
    with HistoryStore(history) as store:
        for i, system, dataset, built in prepared:
            step(f"system {system.id}")
            ev = evaluate_system_defenses(loaded, i, system, dataset, built, cache, store, step)
            folder = out_root if len(prepared) == 1 else out_root / system.id
            paths[system.id] = write_defense_report(ev, folder)
            results[system.id] = ev
    failed = [
        f"{sid}: {r.name}: {r.error}" for sid, ev in results.items() for r in ev.rows if r.error
    ]
    emit(args, _render(fmt, results, paths, failed))
    for line in failed:
        note(args, f"failed: {line}")
    return EXIT_FINDINGS if failed else EXIT_OK


def _render(
    fmt: str, results: dict[str, Any], paths: dict[str, dict[str, Path]], failed: list[str]
) -> str:
    """The evaluations as the terminal table, JSON (one ``to_dict`` per system) or Markdown."""
    from invguard.report.defenses import render_text, table_rows

    if fmt == "json":
        return json.dumps({k: v.to_dict() for k, v in results.items()}, indent=2)
    parts: list[str] = []
    for sid, ev in results.items():
        p = paths[sid]
        if fmt == "markdown":
            attacks = list(ev.baseline.attacks)
            rows = [
                [r["name"], r["kind"], _num(r["test_accuracy"])]
                + [_num(r["attacks"][a]) for a in attacks]
                + [", ".join(r["recommended"]) or "-", r["error"] or ""]
                for r in table_rows(ev)
            ]
            head = ["defence", "kind", "test acc", *(f"{a} top-1" for a in attacks)]
            parts += [f"## {sid}: {ev.dataset} ({ev.arch or 'target'})", ""]
            parts += [markdown_table([*head, "recommended for", "error"], rows), ""]
            parts += [f"- [{t.threat}] {t.recommendation}" for t in ev.threats.values()]
            parts.append(f"- report: {p['html']}\n")
        else:
            parts += [f"\n{sid}: {ev.dataset} ({ev.arch or 'target'})", render_text(ev)]
            parts.append(f"report: {p['html']}  (also {p['json'].name}, {p['png'].name})")
    if fmt == "markdown":
        parts.insert(0, "# InvGuard defence evaluation\n")
    if failed:
        parts.append(f"{len(failed)} requested defence(s) or attack(s) failed (exit 1)")
    return "\n".join(parts)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def add_defend_parser(sub: SubParsers) -> None:
    """Register ``defend`` (with ``evaluate``) on the top-level sub-parsers."""
    p = sub.add_parser("defend", help="measure defences: leakage drop against accuracy drop")
    dsub = p.add_subparsers(dest="defend_command", required=True, metavar="COMMAND")
    e = dsub.add_parser(
        "evaluate",
        help="train/wrap each defence, attack it, and recommend one within an accuracy budget",
        description=(
            "Without --config: the built-in suite on a reference model of the built-in faces. "
            "With --config: the 'defenses:' section of each system."
        ),
        epilog=exit_codes(
            "a requested defence could not be trained or applied, an attack on one failed, or "
            "the system's endpoint could not be reached"
        ),
    )
    e.add_argument("-c", "--config", help="assessment configuration with 'defenses:' sections")
    e.add_argument("--system", help="only this system id (with --config)")
    e.add_argument(
        "--data",
        default="att-faces-private30",
        choices=("att-faces-private30", "att-faces", "digits"),
        help="built-in data (without --config; default att-faces-private30)",
    )
    e.add_argument(
        "--arch", default="mlp", choices=("softmax", "mlp", "cnn"), help="reference architecture"
    )
    e.add_argument(
        "--training",
        action="append",
        metavar="NAME[:k=v,...]",
        help="a training-time defence, e.g. label-smoothing:alpha=-2 (repeatable)",
    )
    e.add_argument(
        "--output",
        action="append",
        metavar="NAME[:k=v,...]",
        help="an output defence, e.g. round:decimals=1 (repeatable)",
    )
    e.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.03,
        help="accuracy budget, absolute (0.03 = 3 points; without --config)",
    )
    e.add_argument("--queries", type=int, default=None, help="query budget per black-box attack")
    e.add_argument("--seed", type=int, default=0, help="seed of models and attacks")
    e.add_argument("--out", help="report folder (default invguard-defenses)")
    e.add_argument("--cache-dir", help="model cache folder")
    e.add_argument("--history-db", help="history database (stored evaluations are reused)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_format_options(e, output_flags=("-o", "--output-file"), json_alias=True)
    e.set_defaults(handler=cmd_defend_evaluate)


__all__ = ["add_defend_parser", "builtin_config", "cmd_defend_evaluate"]
