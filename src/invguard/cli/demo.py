"""``invguard demo``: invert every identity of a reference face classifier, write a report."""

from __future__ import annotations

import argparse
import time

from invguard.cli._common import ARCHS, SubParsers, add_common, cache, progress
from invguard.cli._inversion import ATTACK_CHOICES, add_miface, run_and_report

# Function-level imports below are for laziness: parsers are built without torch.


def add_demo_parser(sub: SubParsers) -> None:
    """Register ``demo`` on the top-level sub-parsers."""
    p = sub.add_parser("demo", help="invert all 40 identities of a face classifier, write a report")
    p.add_argument("--target", choices=ARCHS, default="mlp")
    p.add_argument(
        "--attack",
        choices=ATTACK_CHOICES,
        default="auto",
        help="auto: IF-GMI with the public face generator for convolutional models, else MI-FACE",
    )
    p.add_argument(
        "--out", default="invguard-report", help="report folder (default invguard-report)"
    )
    add_common(p)
    add_miface(p)
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Train (or load) the reference models on the AT&T faces and invert every identity."""
    from invguard.data import load_att_faces
    from invguard.models import train_target

    started = time.perf_counter()
    dataset = load_att_faces()
    trained = train_target(
        dataset,
        args.target,
        seed=args.seed,
        cache=cache(args),
        progress=progress(f"training target '{args.target}'", not args.quiet),
    )
    target_info = {
        "name": args.target,
        "source": "InvGuard reference model"
        + (" (from cache)" if trained.from_cache else " (trained now)"),
        "test_accuracy": trained.test_accuracy,
        "train_accuracy": trained.train_accuracy,
        "seed": args.seed,
    }
    code = run_and_report(
        args=args,
        dataset=dataset,
        model=trained.model,
        target_info=target_info,
        attack_name=args.attack,
        classes=None,
        title=f"InvGuard demo: model inversion against the {args.target} face classifier",
        dataset_source="att-faces",
    )
    if not args.quiet:
        print(f"done in {time.perf_counter() - started:.1f} s")
    return code
