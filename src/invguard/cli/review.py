"""``invguard review ...``: human review of a report's reconstructions.

``export`` writes a blind HTML sheet and its answer key; ``import`` adds the labels a person saved
from the sheet to the report as the highest-ranked judge. Register with ``add_review_parser(sub)``
on the top-level sub-parsers; each sub-command sets ``handler``. Errors the user can fix are
:class:`~invguard.errors.InvGuardError` (one line, exit 2 at the top level). Heavy modules load
only when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from invguard.cli._common import EXIT_OK, SubParsers, nonneg_int, positive_int

# Function-level imports below are for laziness: parsers are built without numpy.

DEFAULT_REPORT_DIR = "invguard-report"


def add_review_parser(sub: SubParsers) -> None:
    """Add the ``review`` command group (``export``, ``import``) to top-level sub-parsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "review",
        help="human review: a blind same/different sheet, and its labels back into the report",
        description="Export a self-contained HTML sheet where a person marks whether each "
        "reconstruction shows the same person as a candidate private image (shuffled, blind to "
        "the judges), then import the saved labels as the highest-ranked judge, with Cohen's kappa "
        "against each automatic judge.",
    )
    rsub = p.add_subparsers(dest="review_command", metavar="REVIEW_COMMAND")
    rsub.required = True

    e = rsub.add_parser(
        "export", help="write the review sheet (HTML) and its answer key (review-key.json)"
    )
    e.add_argument("report_dir", metavar="REPORT_DIR", type=Path, help="a report folder")
    e.add_argument(
        "-o", "--out", type=Path, metavar="FILE", help="the sheet (default REPORT_DIR/review.html)"
    )
    e.add_argument(
        "--seed",
        type=nonneg_int("an integer"),
        default=0,
        help="shuffle and sampling seed (default 0)",
    )
    e.add_argument(
        "--distractors",
        type=positive_int,
        default=1,
        metavar="K",
        help="images of other identities shown beside each reconstruction (default 1)",
    )
    e.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        help="the private training images (.npz with x_train/y_train, or an image folder); "
        "needed when the report's data set is not a built-in one",
    )
    e.set_defaults(handler=cmd_review_export)

    i = rsub.add_parser("import", help="add a saved labels file to the report")
    i.add_argument("labels", metavar="LABELS.json", type=Path, help="labels saved from the sheet")
    i.add_argument(
        "report_dir",
        metavar="REPORT_DIR",
        type=Path,
        nargs="?",
        help=f"the report folder (default: the folder of --key, else {DEFAULT_REPORT_DIR})",
    )
    i.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="the answer key (default REPORT_DIR/review-key.json)",
    )
    i.set_defaults(handler=cmd_review_import)


def cmd_review_export(args: argparse.Namespace) -> int:
    """Write the blind sheet and its answer key."""
    from invguard.review.sheet import export_sheet

    html, key = export_sheet(
        args.report_dir,
        out=args.out,
        seed=args.seed,
        distractors=args.distractors,
        dataset=args.data,
    )
    print(f"review sheet: {html}")
    print(f"answer key:   {key} (keep it from the reviewer)")
    print(f"then: invguard review import LABELS.json {args.report_dir}")
    return EXIT_OK


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def format_review(review: dict[str, Any], verdicts: dict[str, float]) -> str:
    """The import summary: who reviewed what, kappa and agreement per judge, the verdict."""
    who = review["reviewer"] or "an unnamed reviewer"
    pairs = review["pairs"]
    lines = [
        f"human review by {who} (sheet {review['sheet']}): {pairs['labelled']} of "
        f"{pairs['total']} pairs labelled; {review['reviewed']} of {review['identities']} "
        f"identities reviewed, {review['reconstructed']} judged the same person",
        "",
        f"{'judge':<28} {'kappa':>7} {'agreement':>10}",
    ]
    for name, k in review["kappa"].items():
        lines.append(f"{name:<28} {_fmt(k):>7} {_fmt(review['agreement'][name], True):>10}")
    lines += [
        "",
        f"verdict top-1: {_fmt(verdicts['before'], True)} automatic -> "
        f"{_fmt(verdicts['after'], True)} with the human review",
    ]
    return "\n".join(lines)


def cmd_review_import(args: argparse.Namespace) -> int:
    """Validate a labels file and add it to the report."""
    from invguard.review.labels import import_review

    report_dir = args.report_dir
    if report_dir is None:
        report_dir = args.key.parent if args.key is not None else Path(DEFAULT_REPORT_DIR)
    review, verdicts = import_review(args.labels, report_dir, key=args.key)
    print(format_review(review, verdicts))
    print(f"updated {Path(report_dir) / 'report.json'}")
    return EXIT_OK
