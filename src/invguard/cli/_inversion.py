"""What ``demo`` and ``attack`` share: the attack options, running an inversion, the summary.

``judgement_lines`` (the verdict table) is also printed by ``judge``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal

from invguard import __version__
from invguard.cli._common import EXIT_OK, cache, progress
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without torch.

ModelOutput = Literal["logits", "probabilities", "log_probabilities"]
ATTACK_CHOICES = ("auto", "miface", "ifgmi", "ppdg", "ppa", "gmi", "plg")
FINAL_CHOICES = ("select", "mean", "aligned_mean")  # attacks.generative.FINAL_STEPS, without torch
MIFACE_FIELDS = (
    "max_iterations",
    "step_size",
    "optimizer",
    "loss",
    "confidence_threshold",
    "patience",
    "tv_weight",
    "l2_weight",
    "denoise_every",
    "start",
)


def add_miface(p: argparse.ArgumentParser) -> None:
    """The MI-FACE, generative-prior and judging options."""
    g = p.add_argument_group("MI-FACE settings (defaults: the measured best, see README)")
    g.add_argument("--max-iterations", type=int, help="alpha: iteration cap per identity")
    g.add_argument("--step-size", type=float, help="lambda: step size")
    g.add_argument("--optimizer", choices=("adam", "sgd"))
    g.add_argument("--loss", choices=("probability", "log_probability", "logit"))
    g.add_argument("--confidence-threshold", type=float, help="gamma: stop at this confidence")
    g.add_argument("--patience", type=int, help="beta: stop after this many steps without gain")
    g.add_argument("--tv-weight", type=float, help="total-variation prior weight")
    g.add_argument("--l2-weight", type=float, help="L2 prior weight (distance from start)")
    g.add_argument("--denoise-every", type=int, help="apply the denoise step every N steps")
    g.add_argument("--start", choices=("grey", "mean", "random"), help="start point")
    g.add_argument(
        "--aux",
        help=".npz of auxiliary (public) images: --start mean, or the generator's training data",
    )
    g = p.add_argument_group("generative-prior attacks (ifgmi, ppdg, ppa, gmi, plg)")
    g.add_argument(
        "--prior",
        default="auto",
        help="public-faces (the pretrained face DCGAN), trained (a DCGAN on --aux), or a generator "
        "file (.safetensors DCGAN 64x64 nz 100, or a torch.export .pt2); default auto",
    )
    g.add_argument("--steps", type=int, help="latent optimisation steps")
    g.add_argument("--candidates", type=int, help="latents optimised per class")
    g.add_argument("--pool-size", type=int, help="random latents scored for the initial selection")
    g.add_argument(
        "--rounds",
        type=int,
        help="attack rounds, the generator tuned on each round's reconstructions (ppdg: 2)",
    )
    g.add_argument(
        "--final",
        choices=FINAL_CHOICES,
        help="each class's final image: the most confident candidate (select), the candidates' "
        "pixel mean (mean; IF-GMI's default) or their mean after shifting and mirroring each "
        "onto the first (aligned_mean)",
    )
    g = p.add_argument_group("judging")
    g.add_argument(
        "--closed-set",
        action="store_true",
        help="closed-set judges even with --aux (by default they also learn half of the --aux "
        "images as a 'public' class and do not count look-alikes of them)",
    )


def attack_from_args(args: argparse.Namespace, name: str) -> Any:
    """The attack object for ``name`` with the command line's settings."""
    if name == "miface":
        from invguard.attacks import MIFace

        overrides = {
            f: getattr(args, f) for f in MIFACE_FIELDS if getattr(args, f, None) is not None
        }
        return MIFace(**overrides)
    from invguard.attacks.generative import GENERATIVE_ATTACKS

    overrides = {
        field: getattr(args, field)
        for field in ("steps", "candidates", "pool_size", "final", "rounds")
        if getattr(args, field, None) is not None
    }
    return GENERATIVE_ATTACKS[name](**overrides)


def interval_text(j: dict[str, Any]) -> str:
    """`` [95% CI lo-hi]``: the verdict's Wilson interval over the identities ('' for older
    reports, which do not have it)."""
    ci = j.get("verdict_top1_interval")
    return f" [95% CI {ci[0]:.2f}-{ci[1]:.2f}]" if isinstance(ci, list) and len(ci) == 2 else ""


def judgement_lines(j: dict[str, Any]) -> list[str]:
    """The verdict, each judge and the calibration rows as a small table."""
    names = list(j["judges"])
    width = max(12, *(len(n) for n in names))
    faces = "faces_detected" in j  # face data: the detector's naturalness column
    lines = [
        f"  VERDICT top-1 {j['verdict_top1']:.3f}{interval_text(j)} ({j['identities_reconstructed']} "
        f"of {j['identities']} identities; chance {j['chance_top1']:.3f}), top-5 "
        f"{j['verdict_top5']:.3f}; all judges agree on {j['unanimous_top1']:.3f}"
        + ("  [degraded: < 2 reliable judges]" if j["degraded"] else ""),
        "  "
        + "image set".ljust(14)
        + "".join(n.rjust(width + 2) for n in names)
        + "verdict".rjust(9)
        + ("faces detected".rjust(16) if faces else ""),
    ]

    def row(label: str, per: dict[str, Any], verdict: float, detected: float | None) -> str:
        cells = "".join(f"{per[n]['top1']:.3f}".rjust(width + 2) for n in names)
        tail = "" if not faces else ("-" if detected is None else f"{detected:.3f}").rjust(16)
        return "  " + label.ljust(14) + cells + f"{verdict:.3f}".rjust(9) + tail

    lines.append(row("reconstructed", j["judges"], j["verdict_top1"], j.get("faces_detected")))
    for name, c in j["calibration"].items():
        lines.append(row(name, c["judges"], c["verdict_top1"], c.get("faces_detected")))
    lines.append(
        "  "
        + "status".ljust(14)
        + "".join(j["judges"][n]["status"].rjust(width + 2) for n in names)
    )
    for n in j.get("notes", []):
        lines.append(f"  note: {n}")
    if faces:
        lines.append(f"  faces detected: {j['faces_detected_note']}")
    return lines


def print_summary(summary: dict[str, Any], paths: dict[str, Path] | None, header: str) -> None:
    """The run's verdict, metrics and cost, and where the report is."""
    m = summary["metrics"]
    a = summary["attack"]
    lines = [header]
    j = summary.get("judgement")
    if j is not None:
        lines += judgement_lines(j)
    lines += [
        f"  evaluation model        top-1 {m['top1_accuracy']:.3f}, top-5 {m['top5_accuracy']:.3f}, "
        f"KNN {m['knn_distance']:.2f}, SSIM {m['ssim']:.3f}, PSNR {m['psnr']:.2f} dB",
        f"  target confidence       {m['target_confidence']:.3f}",
        f"  cost                    {a['queries']} queries, {a['seconds']:.2f} s",
    ]
    if paths:
        lines.append(f"report: {paths['html']}")
        lines.append(f"json:   {paths['json']}")
    print("\n".join(lines))


def load_aux(path: Path, shape: tuple[int, ...]) -> Any:
    """The ``--aux`` images as float32 (m, *shape)."""
    import numpy as np

    if not path.is_file():
        raise InvalidParameterError(f"--aux file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            key = "x" if "x" in npz.files else npz.files[0]
            arr = np.asarray(npz[key], dtype=np.float32)
    except (OSError, ValueError, IndexError) as exc:
        raise InvalidParameterError(
            f"--aux {path} is not a readable .npz of images: {exc}"
        ) from exc
    if arr.ndim == len(shape) and tuple(arr.shape[1:]) == tuple(shape[1:]):
        arr = arr[:, None]
    if tuple(arr.shape[1:]) != tuple(shape):
        raise InvalidParameterError(
            f"--aux images must have shape (m, {', '.join(map(str, shape))}), got {arr.shape}"
        )
    return arr


def _prior(args: argparse.Namespace, name: str, dataset: Any, target: Any, auxiliary: Any) -> Any:
    """The generative prior of a generative attack (None for MI-FACE)."""
    if name == "miface":
        return None
    from invguard.attacks.priors_setup import prepare_prior
    from invguard.judges import is_face_data

    return prepare_prior(
        args.prior,
        attack=name,
        shape=dataset.image_shape,
        faces=is_face_data(dataset),
        public=auxiliary,
        target=target,
        cache=cache(args),
        seed=args.seed,
        progress=progress(f"training the {name} generator", not args.quiet),
    )


def run_and_report(
    *,
    args: argparse.Namespace,
    dataset: Any,
    model: Any,
    target_info: dict[str, Any],
    attack_name: str,
    classes: list[int] | None,
    title: str,
    dataset_source: str | None = None,
    output: ModelOutput = "logits",
    normalize: tuple[list[float], list[float]] | None = None,
) -> int:
    """Invert ``model``, judge the reconstructions, write the report and print the summary."""
    from invguard.attacks import InversionRequest
    from invguard.attacks.priors_setup import choose_attack
    from invguard.judges import judge_run, reference_panel
    from invguard.metrics import evaluate_inversion
    from invguard.report import InversionReport
    from invguard.targets import TorchTarget

    show = not args.quiet
    target = TorchTarget(model, input_shape=dataset.image_shape, output=output, normalize=normalize)
    target_info = {**target_info, "io": target.describe(dataset.class_names)}
    auxiliary = load_aux(Path(args.aux), dataset.image_shape) if args.aux else None
    name = choose_attack(attack_name, model)
    attack = attack_from_args(args, name)
    InversionRequest(classes=classes).resolve_classes(target.num_classes)  # fail fast
    prior = _prior(args, name, dataset, target, auxiliary)
    request = InversionRequest(classes=classes, auxiliary=auxiliary, prior=prior)
    panel, evaluator, ev_info = reference_panel(
        dataset,
        cache=cache(args),
        progress=progress("training evaluation model", show),
        public=None if args.closed_set else auxiliary,
    )
    result = attack.run(
        target, request, rng=args.seed, progress=progress(f"inverting with {attack.name}", show)
    )
    if show:
        print(
            "judging: every judge on the reconstructions and the calibration rows", file=sys.stderr
        )
    judgement = judge_run(
        panel, dataset, result.reconstructions, result.classes, target, public=auxiliary
    )
    report = InversionReport(
        title=title,
        dataset=dataset,
        target=target_info,
        evaluator={"name": "evalnet", **ev_info},
        result=result,
        metrics=evaluate_inversion(result, evaluator, dataset),
        judgement=judgement,
        dataset_source=dataset_source,
    )
    paths = report.write(args.out)
    print_summary(
        report.to_dict(),
        paths,
        f"InvGuard {__version__} - {attack.name} against {target_info['name']} "
        f"({dataset.name}, {len(result.classes)} classes)",
    )
    return EXIT_OK
