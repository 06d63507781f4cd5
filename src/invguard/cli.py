"""The ``invguard`` command line.

Exit codes: 0 success, 1 a finding/check failed (used by later gates), 2 bad input or usage.
Errors that the user can fix are one line on stderr; heavy modules load only when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

from invguard import __version__
from invguard.errors import InvalidParameterError, InvGuardError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
ModelOutput = Literal["logits", "probabilities", "log_probabilities"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------------------------
# helpers


def _progress(desc: str, enabled: bool) -> Callable[[int, int], None] | None:
    """A tqdm-backed ``progress(done, total)`` callback on stderr, or None when disabled."""
    if not enabled:
        return None
    from tqdm import tqdm

    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(
                tqdm(total=total, desc=desc, unit="it", leave=False, file=sys.stderr, disable=None)
            )
        b = bar[0]
        b.update(done - b.n)
        if done >= total:
            b.close()

    return update


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 46x56, got {text!r}"
        ) from None
    if w < 4 or h < 4:
        raise argparse.ArgumentTypeError(f"image size must be at least 4x4, got {text!r}")
    return (w, h)


def _parse_normalize(text: str) -> tuple[list[float], list[float]]:
    """'MEAN[,MEAN..]/STD[,STD..]', e.g. '0.5/0.5' or '0.485,0.456,0.406/0.229,0.224,0.225'."""
    try:
        mean, std = text.split("/")
        pair = ([float(v) for v in mean.split(",")], [float(v) for v in std.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MEAN[,MEAN..]/STD[,STD..] such as 0.5/0.5 or "
            f"0.485,0.456,0.406/0.229,0.224,0.225, got {text!r}"
        ) from None
    if any(v <= 0 for v in pair[1]):
        raise argparse.ArgumentTypeError(f"every STD must be > 0, got {text!r}")
    return pair


def _parse_classes(text: str) -> list[int]:
    """'0,3,7' or '0-9' or a mix: '0-4,10'."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected class indices like '0,3,7' or '0-9', got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one class index")
    return out


def _load_dataset(name: str, size: tuple[int, int] | None) -> Any:
    from invguard.data import load_att_faces, load_builtin

    if size is not None:
        if not name.startswith("att-faces"):
            raise InvalidParameterError(
                f"--image-size applies to the AT&T faces only, not to dataset {name!r}"
            )
        return load_att_faces(size)
    return load_builtin(name)


def _cache(args: argparse.Namespace) -> Any:
    from invguard.models import ModelCache, default_cache_dir

    return ModelCache(args.cache_dir or default_cache_dir())


def _miface_from_args(args: argparse.Namespace) -> Any:
    from invguard.attacks import MIFace

    overrides: dict[str, Any] = {}
    for field in (
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
    ):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return MIFace(**overrides)


def _attack_from_args(args: argparse.Namespace, name: str) -> Any:
    """The attack object for ``name`` with the command line's settings."""
    if name == "miface":
        return _miface_from_args(args)
    from invguard.attacks.generative import GENERATIVE_ATTACKS

    overrides = {
        field: getattr(args, field)
        for field in ("steps", "candidates", "pool_size")
        if getattr(args, field, None) is not None
    }
    return GENERATIVE_ATTACKS[name](**overrides)


def _print_summary(summary: dict[str, Any], paths: dict[str, Path] | None, header: str) -> None:
    m = summary["metrics"]
    a = summary["attack"]
    lines = [header]
    j = summary.get("judgement")
    if j is not None:
        lines += _judgement_lines(j)
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


def _judgement_lines(j: dict[str, Any]) -> list[str]:
    """The verdict, each judge and the calibration rows as a small table."""
    names = list(j["judges"])
    width = max(12, *(len(n) for n in names))
    lines = [
        f"  VERDICT top-1 {j['verdict_top1']:.3f} ({j['identities_reconstructed']} of "
        f"{j['identities']} identities; chance {j['chance_top1']:.3f}), top-5 "
        f"{j['verdict_top5']:.3f}; all judges agree on {j['unanimous_top1']:.3f}"
        + ("  [degraded: < 2 reliable judges]" if j["degraded"] else ""),
        "  "
        + "image set".ljust(14)
        + "".join(n.rjust(width + 2) for n in names)
        + "verdict".rjust(9),
    ]

    def row(label: str, per: dict[str, Any], verdict: float) -> str:
        cells = "".join(f"{per[n]['top1']:.3f}".rjust(width + 2) for n in names)
        return "  " + label.ljust(14) + cells + f"{verdict:.3f}".rjust(9)

    lines.append(row("reconstructed", j["judges"], j["verdict_top1"]))
    for name, c in j["calibration"].items():
        lines.append(row(name, c["judges"], c["verdict_top1"]))
    lines.append(
        "  "
        + "status".ljust(14)
        + "".join(j["judges"][n]["status"].rjust(width + 2) for n in names)
    )
    for n in j.get("notes", []):
        lines.append(f"  note: {n}")
    return lines


def _run_and_report(
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
    from invguard.attacks import InversionRequest
    from invguard.attacks.priors_setup import choose_attack, prepare_prior
    from invguard.judges import judge_run, reference_panel
    from invguard.metrics import evaluate_inversion
    from invguard.report import InversionReport
    from invguard.targets import TorchTarget

    show = not args.quiet
    target = TorchTarget(model, input_shape=dataset.image_shape, output=output, normalize=normalize)
    target_info = {**target_info, "io": target.describe(dataset.class_names)}
    auxiliary = _load_aux(Path(args.aux), dataset.image_shape) if args.aux else None
    name = choose_attack(attack_name, model)
    attack = _attack_from_args(args, name)
    InversionRequest(classes=classes).resolve_classes(target.num_classes)  # fail fast
    prior = None
    if name != "miface":
        from invguard.judges import is_face_data

        prior = prepare_prior(
            args.prior,
            attack=name,
            shape=dataset.image_shape,
            faces=is_face_data(dataset),
            public=auxiliary,
            target=target,
            cache=_cache(args),
            seed=args.seed,
            progress=_progress(f"training the {name} generator", show),
        )
    request = InversionRequest(classes=classes, auxiliary=auxiliary, prior=prior)
    panel, evaluator, ev_info = reference_panel(
        dataset,
        cache=_cache(args),
        progress=_progress("training evaluation model", show),
        public=None if args.closed_set else auxiliary,
    )
    result = attack.run(
        target, request, rng=args.seed, progress=_progress(f"inverting with {attack.name}", show)
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
    _print_summary(
        report.to_dict(),
        paths,
        f"InvGuard {__version__} - {attack.name} against {target_info['name']} "
        f"({dataset.name}, {len(result.classes)} classes)",
    )
    return EXIT_OK


def _load_aux(path: Path, shape: tuple[int, ...]) -> Any:
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


# ---------------------------------------------------------------------------------------------
# commands


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
        cache=_cache(args),
        progress=_progress(f"training target '{args.target}'", not args.quiet),
    )
    target_info = {
        "name": args.target,
        "source": "InvGuard reference model"
        + (" (from cache)" if trained.from_cache else " (trained now)"),
        "test_accuracy": trained.test_accuracy,
        "train_accuracy": trained.train_accuracy,
        "seed": args.seed,
    }
    code = _run_and_report(
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


def _attack_data(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The private data: ``--data`` (the user's folder or .npz) or a built-in ``--dataset``."""
    if args.data is None:
        name = args.dataset or "att-faces"
        return _load_dataset(name, args.image_size), name if args.image_size is None else None
    if args.dataset is not None:
        raise InvalidParameterError("give either --data (your own images) or --dataset, not both")
    from invguard.data import load_image_folder, load_npz_dataset

    path = Path(args.data)
    if path.is_dir():
        return load_image_folder(path, args.image_size), None
    if path.suffix.lower() != ".npz":
        raise InvalidParameterError(
            f"--data must be a folder (train/<class>/*.png, test/<class>/*.png) or an .npz file "
            f"with x_train, y_train, x_test, y_test; got {path}"
        )
    if args.image_size is not None:
        raise InvalidParameterError("--image-size applies to --data folders, not to .npz files")
    return load_npz_dataset(path), None


def _factory_kwargs(text: str | None) -> dict[str, Any]:
    import json

    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except ValueError as exc:
        raise InvalidParameterError(
            f"--factory-kwargs must be a JSON object such as '{{\"width\": 32}}': {exc}"
        ) from exc
    if not isinstance(kwargs, dict):
        raise InvalidParameterError(
            f"--factory-kwargs must be a JSON object, got {type(kwargs).__name__}"
        )
    return kwargs


def cmd_attack(args: argparse.Namespace) -> int:
    """Invert the user's own PyTorch model: a torch.export program, a factory of the user's own
    code plus weights, or weights of a reference architecture."""
    from invguard.models.loading import load_user_model

    if args.factory_kwargs is not None and args.factory is None:
        raise InvalidParameterError("--factory-kwargs needs --factory")
    dataset, source = _attack_data(args)
    model, loaded = load_user_model(
        args.model,
        arch=args.arch,
        factory=args.factory,
        kwargs=_factory_kwargs(args.factory_kwargs),
        shape=dataset.image_shape,
        num_classes=dataset.num_classes,
        search_path=Path.cwd(),
    )
    target_info = {
        "name": args.arch or Path(args.model).name,
        **loaded,
        "model_output": args.model_output,
        "test_accuracy": _test_accuracy(model, dataset, args.normalize)
        if len(dataset.y_test)
        else None,
    }
    return _run_and_report(
        args=args,
        dataset=dataset,
        model=model,
        target_info=target_info,
        attack_name=args.attack,
        classes=args.classes,
        title=f"InvGuard: model inversion against {Path(args.model).name}",
        dataset_source=source,
        output=args.model_output,
        normalize=args.normalize,
    )


def _test_accuracy(
    model: Any, dataset: Any, normalize: tuple[list[float], list[float]] | None = None
) -> float:
    from invguard.models.training import accuracy

    if normalize is None:
        return accuracy(model, dataset.x_test, dataset.y_test)
    from invguard.targets import TorchTarget

    owner = TorchTarget(model, input_shape=dataset.image_shape, normalize=normalize)
    return float((owner.predict(dataset.x_test).argmax(1) == dataset.y_test).mean())


def _load_recons(path: Path, shape: tuple[int, int, int]) -> Any:
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
    return arr.astype(np.float32)


def _load_labels(path: Path | None, n: int, num_classes: int) -> Any:
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
    import json

    from invguard.judges import judge_images, reference_panel, run_calibration
    from invguard.models import train_target
    from invguard.targets import TorchTarget

    dataset = _load_dataset(args.dataset, args.image_size)
    recons = _load_recons(Path(args.recons), dataset.image_shape)
    labels = _load_labels(
        Path(args.labels) if args.labels else None, len(recons), dataset.num_classes
    )
    show = not args.quiet
    cache = _cache(args)
    panel, _, _ = reference_panel(
        dataset, cache=cache, progress=_progress("training evaluation model", show)
    )
    surrogate = train_target(dataset, "mlp", seed=args.seed, cache=cache)
    cal = run_calibration(
        dataset,
        labels,
        None,
        surrogate=TorchTarget(surrogate.model, input_shape=dataset.image_shape),
        surrogate_name="InvGuard's reference MLP trained on the same private images",
    )
    summary = judge_images(panel, recons, labels, cal).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"InvGuard {__version__} - {len(recons)} reconstructions judged against {dataset.name}")
    print("\n".join(_judgement_lines(summary)))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train a reference target model and save its weights (safetensors) for ``invguard attack``."""
    from safetensors.torch import save_file

    from invguard.models import train_target
    from invguard.report.io import write_atomic

    dataset = _load_dataset(args.dataset, args.image_size)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise InvalidParameterError(f"--out must end in .safetensors, got {out.name!r}")
    trained = train_target(
        dataset,
        args.arch,
        seed=args.seed,
        cache=_cache(args),
        progress=_progress(f"training '{args.arch}'", not args.quiet),
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


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented example assessment configuration for the built-in faces."""
    from invguard.assess.templates import EXAMPLE_CONFIG
    from invguard.report.io import write_atomic

    path = Path(args.path)
    if path.exists() and not args.force:
        raise InvalidParameterError(f"{path} already exists (use --force to overwrite it)")
    write_atomic(path, EXAMPLE_CONFIG)
    print(f"wrote {path}; run it with:  invguard assess -c {path}")
    return EXIT_OK


def cmd_assess(args: argparse.Namespace) -> int:
    """Run (or resume) an assessment; exit 1 when the CI gate trips."""
    from invguard.assess.config import load_config
    from invguard.assess.engine import run_assessment, summary_lines
    from invguard.assess.executors import make_executor

    loaded = load_config(args.config)
    executor = make_executor(args.executor, ray_address=args.ray_address)
    bar: list[Any] = []

    def progress(done: int, total: int, outcome: Any) -> None:
        if args.quiet:
            return
        from tqdm import tqdm

        if not bar:
            bar.append(
                tqdm(total=total, desc="assessment jobs", unit="job", file=sys.stderr, disable=None)
            )
        b = bar[0]
        b.update(done - b.n)
        if outcome is not None and outcome.status != "ok":
            b.write(
                f"job {outcome.system_id}/{outcome.attack}/{outcome.seed} failed: {outcome.error}"
            )
        if done >= total:
            b.close()

    try:
        assessment = run_assessment(
            loaded,
            executor=executor,
            out_dir=Path(args.out) if args.out else None,
            history_db=Path(args.history_db) if args.history_db else None,
            audit_db=Path(args.audit_db) if args.audit_db else None,
            use_audit=not args.no_audit,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            progress=progress,
            defense_progress=None
            if args.quiet
            else (lambda msg: print(f"  defences: {msg}", file=sys.stderr, flush=True)),
        )
    finally:
        executor.close()
    print("\n".join(summary_lines(assessment)))
    out = Path(args.out) if args.out else loaded.resolve(loaded.config.output_dir)
    print(f"report: {out / 'assessment.html'}  (also assessment.json, assessment.sarif)")
    threshold = args.fail_on or loaded.config.fail_on
    passed, reason = assessment.gate(threshold)
    print(f"gate (fail on {threshold}): {'passed' if passed else 'FAILED'}: {reason}")
    return EXIT_OK if passed else EXIT_FINDINGS


def cmd_history(args: argparse.Namespace) -> int:
    """List past assessment runs and each system's risk score."""
    import json

    from invguard.assess.history import HistoryStore

    path = Path(args.history_db)
    if not path.is_file():
        raise InvalidParameterError(f"history database not found: {path}")
    with HistoryStore(path) as store:
        runs = store.runs(system=args.system, limit=args.limit)
    if args.json:
        print(json.dumps([r.__dict__ for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no finished runs")
        return EXIT_OK
    for r in runs:
        systems = ", ".join(
            f"{k} {v['risk_score']:.2f} {v['risk_level']}" for k, v in sorted(r.systems.items())
        )
        print(f"run {r.id:4d}  {r.finished_at}  {r.status:10s}  {r.name}: {systems}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="model cache folder (default $INVGUARD_CACHE_DIR or ~/.cache/invguard)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_miface(p: argparse.ArgumentParser) -> None:
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
    g = p.add_argument_group("generative-prior attacks (ppa, gmi, plg)")
    g.add_argument(
        "--prior",
        default="auto",
        help="public-faces (the pretrained face DCGAN), trained (a DCGAN on --aux), or a generator "
        "file (.safetensors DCGAN 64x64 nz 100, or a torch.export .pt2); default auto",
    )
    g.add_argument("--steps", type=int, help="latent optimisation steps")
    g.add_argument("--candidates", type=int, help="latents optimised per class")
    g.add_argument("--pool-size", type=int, help="random latents scored for the initial selection")
    g = p.add_argument_group("judging")
    g.add_argument(
        "--closed-set",
        action="store_true",
        help="closed-set judges even with --aux (by default they also learn half of the --aux "
        "images as a 'public' class and do not count look-alikes of them)",
    )


ATTACK_CHOICES = ("auto", "miface", "ppa", "gmi", "plg")


def _add_attack_parser(sub: Any) -> None:
    """``invguard attack``: the user's own model (program, factory + weights, or --arch)."""
    p = sub.add_parser(
        "attack",
        help="invert your own PyTorch model (torch.export .pt2, factory + weights, or --arch)",
    )
    p.add_argument(
        "--model",
        required=True,
        help="a torch.export program (.pt2), or weights (.safetensors or a torch state dict) "
        "with --factory or --arch",
    )
    p.add_argument(
        "--arch", choices=("softmax", "mlp", "cnn"), help="the weights' reference architecture"
    )
    p.add_argument(
        "--factory",
        help="pkg.module:function building your model (your own code, imported and run; the "
        "current folder is on the import path) for the --model weights",
    )
    p.add_argument("--factory-kwargs", help="JSON object of keyword arguments for --factory")
    p.add_argument(
        "--model-output",
        choices=("logits", "probabilities", "log_probabilities"),
        default="logits",
        help="what the model returns (probabilities: it ends in softmax); default logits",
    )
    p.add_argument(
        "--normalize",
        type=_parse_normalize,
        metavar="MEAN[,MEAN..]/STD[,STD..]",
        help="the model takes (x - mean) / std per channel, e.g. 0.5/0.5 or "
        "0.485,0.456,0.406/0.229,0.224,0.225; InvGuard works in pixels [0, 1] and normalises "
        "before the model",
    )
    p.add_argument(
        "--attack",
        choices=ATTACK_CHOICES,
        default="auto",
        help="auto: PPA (generative prior) for convolutional models, else MI-FACE",
    )
    p.add_argument(
        "--data",
        help="your private training images: a folder (train/<class>/*.png, test/<class>/*.png) "
        "or an .npz with x_train, y_train, x_test, y_test in [0, 1]",
    )
    p.add_argument(
        "--dataset",
        choices=("att-faces", "att-faces-full", "att-faces-private30", "digits", "mnist-0-4"),
        help="or a built-in data set the model was trained on (default att-faces, 46x56)",
    )
    p.add_argument(
        "--image-size", type=_parse_size, help="AT&T faces or --data folder size WxH, e.g. 92x112"
    )
    p.add_argument("--classes", type=_parse_classes, help="classes to invert, e.g. 0-9 or 1,5,7")
    p.add_argument("--out", default="invguard-report", help="report folder")
    _add_common(p)
    _add_miface(p)
    p.set_defaults(handler=cmd_attack)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="invguard",
        description="Measure how much of its training data a model leaks through model inversion.",
    )
    parser.add_argument("--version", action="version", version=f"invguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("demo", help="invert all 40 identities of a face classifier, write a report")
    p.add_argument("--target", choices=("softmax", "mlp", "cnn"), default="mlp")
    p.add_argument(
        "--attack",
        choices=ATTACK_CHOICES,
        default="auto",
        help="auto: PPA with the public face generator for convolutional models, else MI-FACE",
    )
    p.add_argument(
        "--out", default="invguard-report", help="report folder (default invguard-report)"
    )
    _add_common(p)
    _add_miface(p)
    p.set_defaults(handler=cmd_demo)

    _add_attack_parser(sub)

    p = sub.add_parser(
        "judge", help="judge reconstructions from any tool with every judge and the verdict"
    )
    p.add_argument("recons", help="RECONS.npy: float32 (n, c, h, w) in [0, 1]")
    p.add_argument(
        "--dataset",
        choices=("att-faces", "att-faces-full", "att-faces-private30", "digits", "mnist-0-4"),
        default="att-faces",
        help="the private data the reconstructions are of (default att-faces, 46x56)",
    )
    p.add_argument("--image-size", type=_parse_size, help="AT&T faces size WxH, e.g. 92x112")
    p.add_argument("--labels", help="L.npy: the class of each reconstruction (default 0..n-1)")
    p.add_argument("--json", action="store_true", help="print the judgement as JSON")
    _add_common(p)
    p.set_defaults(handler=cmd_judge)

    p = sub.add_parser("train", help="train a reference target model and save it")
    p.add_argument("--arch", required=True, choices=("softmax", "mlp", "cnn"))
    p.add_argument(
        "--dataset", choices=("att-faces", "att-faces-full", "digits"), default="att-faces"
    )
    p.add_argument("--image-size", type=_parse_size, help="AT&T faces size WxH, e.g. 92x112")
    p.add_argument("--out", required=True, help="output .safetensors file")
    _add_common(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("init", help="write an example assessment configuration (invguard.yaml)")
    p.add_argument("path", nargs="?", default="invguard.yaml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("assess", help="run an assessment from a configuration file")
    p.add_argument("-c", "--config", default="invguard.yaml", help="configuration (invguard.yaml)")
    p.add_argument(
        "--fail-on",
        choices=("critical", "high", "medium", "low", "info", "none"),
        help="exit 1 when a finding is at or above this severity (default: the config's fail_on)",
    )
    p.add_argument("--executor", choices=("in-process", "ray"), default="in-process")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--out", help="report folder (default: the config's output_dir)")
    p.add_argument("--history-db", help="history database (default: the config's history_db)")
    p.add_argument("--audit-db", help="audit log (default: the config's audit_db)")
    p.add_argument("--no-audit", action="store_true", help="do not write to the audit log")
    p.add_argument("--cache-dir", default=None, help="model cache folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_assess)

    p = sub.add_parser("history", help="past assessment runs and risk scores")
    p.add_argument("--history-db", default="invguard-history.db")
    p.add_argument("--system", help="only this system")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)

    from invguard.audit.cli import add_audit_parser
    from invguard.defenses.cli import add_defend_parser
    from invguard.gateway.cli import add_serve_parser
    from invguard.review.cli import add_review_parser
    from invguard.tabular.cli import add_tabular_parser

    add_audit_parser(sub)
    add_defend_parser(sub)
    add_review_parser(sub)
    add_serve_parser(sub)
    add_tabular_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except InvGuardError as exc:
        print(f"invguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("invguard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
