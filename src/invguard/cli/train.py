"""``invguard train``: train a reference target model and save it for ``invguard attack``."""

from __future__ import annotations

import argparse
from pathlib import Path

from invguard.cli._common import (
    ARCHS,
    EXIT_OK,
    SubParsers,
    add_common,
    cache,
    load_dataset,
    parse_size,
    progress,
)
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without torch.


def add_train_parser(sub: SubParsers) -> None:
    """Register ``train`` on the top-level sub-parsers."""
    p = sub.add_parser("train", help="train a reference target model and save it")
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument(
        "--dataset", choices=("att-faces", "att-faces-full", "digits"), default="att-faces"
    )
    p.add_argument("--image-size", type=parse_size, help="AT&T faces size WxH, e.g. 92x112")
    p.add_argument("--out", required=True, help="output .safetensors file")
    add_common(p)
    p.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a reference target model and save its weights (safetensors) for ``invguard attack``."""
    from safetensors.torch import save_file

    from invguard.models import train_target
    from invguard.report.io import write_atomic

    dataset = load_dataset(args.dataset, args.image_size)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise InvalidParameterError(f"--out must end in .safetensors, got {out.name!r}")
    trained = train_target(
        dataset,
        args.arch,
        seed=args.seed,
        cache=cache(args),
        progress=progress(f"training '{args.arch}'", not args.quiet),
    )
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in trained.model.state_dict().items()},
        str(tmp),
        metadata={"arch": args.arch, "dataset": dataset.name},
    )
    write_atomic(out, tmp.read_bytes())
    tmp.unlink()
    acc = trained.test_accuracy if trained.test_accuracy is not None else float("nan")
    print(f"saved {args.arch} trained on {dataset.name} to {out} (test accuracy {acc:.3f})")
    return EXIT_OK
