"""``invguard judge``: any tool's reconstructions, judged with every judge and the verdict."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from invguard import __version__
from invguard.cli._common import (
    DATASETS,
    EXIT_OK,
    SubParsers,
    add_common,
    add_format_options,
    cache,
    check_format,
    emit,
    exit_codes,
    load_dataset,
    parse_size,
    progress,
)
from invguard.cli._inversion import interval_text, judgement_lines
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without numpy or torch.


def add_judge_parser(sub: SubParsers) -> None:
    """Register ``judge`` on the top-level sub-parsers."""
    p = sub.add_parser(
        "judge",
        help="judge reconstructions from any tool with every judge and the verdict",
        epilog=exit_codes("not used: judging reports a measurement, it has no gate"),
    )
    p.add_argument("recons", help="RECONS.npy: float32 (n, c, h, w) in [0, 1]")
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="att-faces",
        help="the private data the reconstructions are of (default att-faces, 46x56)",
    )
    p.add_argument("--image-size", type=parse_size, help="AT&T faces size WxH, e.g. 92x112")
    p.add_argument("--labels", help="L.npy: the class of each reconstruction (default 0..n-1)")
    add_common(p)
    add_format_options(p, json_alias=True)
    p.set_defaults(handler=cmd_judge)


def _check_recons(arr: Any, shape: tuple[int, int, int]) -> None:
    import numpy as np

    if arr.ndim != 4 or tuple(arr.shape[1:]) != shape:
        c, h, w = shape
        raise InvalidParameterError(
            f"reconstructions must have shape (n, {c}, {h}, {w}) for this data set, got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InvalidParameterError("reconstructions: the file holds no images")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidParameterError(
            f"reconstructions must be float values in [0, 1], got {arr.dtype}"
        )
    if not np.isfinite(arr).all():
        raise InvalidParameterError("reconstructions contain NaN or infinite values")
    if float(arr.min()) < 0.0 or float(arr.max()) > 1.0:
        raise InvalidParameterError(
            f"reconstruction values must lie in [0, 1], got [{float(arr.min()):.3g}, "
            f"{float(arr.max()):.3g}]"
        )


def load_recons(path: Path, shape: tuple[int, int, int]) -> Any:
    """RECONS.npy (or .npz with 'x'): float32 (n, c, h, w) in [0, 1], checked field by field."""
    import numpy as np

    if not path.is_file():
        raise InvalidParameterError(f"reconstructions file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        arr = loaded["x"] if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidParameterError(
            f"{path} is not a .npy array (or .npz with 'x') readable without pickle: {exc}"
        ) from exc
    arr = np.asarray(arr)
    _check_recons(arr, shape)
    return arr.astype(np.float32)


def load_labels(path: Path | None, n: int, num_classes: int) -> Any:
    """L.npy: one class index per reconstruction (default 0..n-1)."""
    import numpy as np

    if path is None:
        if n > num_classes:
            raise InvalidParameterError(
                f"--labels is required: {n} reconstructions but only {num_classes} classes"
            )
        return np.arange(n, dtype=np.int64)
    if not path.is_file():
        raise InvalidParameterError(f"--labels file not found: {path}")
    try:
        lab = np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"--labels {path} is not a .npy array: {exc}") from exc
    if lab.shape != (n,):
        raise InvalidParameterError(f"--labels must have shape ({n},), got {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise InvalidParameterError(f"--labels must be integer class indices, got {lab.dtype}")
    if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        bad = int(lab[(lab < 0) | (lab >= num_classes)][0])
        raise InvalidParameterError(
            f"--labels: class {bad} is out of range: the data set has {num_classes} classes "
            f"(0 to {num_classes - 1})"
        )
    return lab.astype(np.int64)


def cmd_judge(args: argparse.Namespace) -> int:
    """Judge any tool's reconstructions with every judge, the calibration rows and the verdict."""
    from invguard.judges import judge_images, reference_panel, run_calibration
    from invguard.models import train_target
    from invguard.targets import TorchTarget

    fmt = check_format(args, "judge", ("table", "json", "markdown"))
    dataset = load_dataset(args.dataset, args.image_size)
    recons = load_recons(Path(args.recons), dataset.image_shape)
    labels = load_labels(
        Path(args.labels) if args.labels else None, len(recons), dataset.num_classes
    )
    show = not args.quiet
    model_cache = cache(args)
    panel, _, _ = reference_panel(
        dataset, cache=model_cache, progress=progress("training evaluation model", show)
    )
    surrogate = train_target(dataset, "mlp", seed=args.seed, cache=model_cache)
    cal = run_calibration(
        dataset,
        labels,
        None,
        surrogate=TorchTarget(surrogate.model, input_shape=dataset.image_shape),
        surrogate_name="InvGuard's reference MLP trained on the same private images",
    )
    summary = judge_images(panel, recons, labels, cal).summary()
    head = f"InvGuard {__version__} - {len(recons)} reconstructions judged against {dataset.name}"
    if fmt == "json":
        emit(args, json.dumps(summary, indent=2))
    elif fmt == "markdown":
        emit(args, judgement_markdown(head, summary))
    else:
        emit(args, "\n".join([head, *judgement_lines(summary)]))
    return EXIT_OK


def judgement_markdown(head: str, j: dict[str, Any]) -> str:
    """The verdict and a table of each judge's top-1 on the reconstructions and calibration sets."""
    from invguard.cli._common import markdown_table

    names = list(j["judges"])
    faces = "faces_detected" in j

    def detected(d: dict[str, Any]) -> list[str]:
        value = d.get("faces_detected")
        return [] if not faces else ["-" if value is None else f"{value:.3f}"]

    rows = [["reconstructed", *(f"{j['judges'][n]['top1']:.3f}" for n in names)]]
    rows[0] += [f"{j['verdict_top1']:.3f}", *detected(j)]
    for name, c in j["calibration"].items():
        rows.append([name, *(f"{c['judges'][n]['top1']:.3f}" for n in names)])
        rows[-1] += [f"{c['verdict_top1']:.3f}", *detected(c)]
    rows.append(
        ["status", *(str(j["judges"][n]["status"]) for n in names), "", *([""] if faces else [])]
    )
    lines = [
        f"# {head}",
        "",
        f"**Verdict top-1 {j['verdict_top1']:.3f}**{interval_text(j)} "
        f"({j['identities_reconstructed']} of "
        f"{j['identities']} identities; chance {j['chance_top1']:.3f}), top-5 "
        f"{j['verdict_top5']:.3f}; all judges agree on {j['unanimous_top1']:.3f}"
        + (" (degraded: fewer than 2 reliable judges)" if j["degraded"] else ""),
        "",
        markdown_table(
            ["image set", *names, "verdict", *(["faces detected"] if faces else [])], rows
        ),
    ]
    lines += [f"\n- note: {n}" for n in j.get("notes", [])]
    if faces:
        lines.append(f"\n- faces detected: {j['faces_detected_note']}")
    return "\n".join(lines)
