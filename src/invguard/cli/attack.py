"""``invguard attack``: invert the user's own PyTorch model (a torch.export program, a factory of
the user's code plus weights, or weights of a reference architecture)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from invguard.cli._common import (
    ARCHS,
    DATASETS,
    SubParsers,
    add_common,
    load_dataset,
    parse_classes,
    parse_normalize,
    parse_size,
)
from invguard.cli._inversion import ATTACK_CHOICES, add_miface, run_and_report
from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without torch.


def add_attack_parser(sub: SubParsers) -> None:
    """Register ``attack`` on the top-level sub-parsers."""
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
    p.add_argument("--arch", choices=ARCHS, help="the weights' reference architecture")
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
        type=parse_normalize,
        metavar="MEAN[,MEAN..]/STD[,STD..]",
        help="the model takes (x - mean) / std per channel, e.g. 0.5/0.5 or "
        "0.485,0.456,0.406/0.229,0.224,0.225; InvGuard works in pixels [0, 1] and normalises "
        "before the model",
    )
    p.add_argument(
        "--attack",
        choices=ATTACK_CHOICES,
        default="auto",
        help="auto: IF-GMI (generative prior) for convolutional models, else MI-FACE",
    )
    p.add_argument(
        "--data",
        help="your private training images: a folder (train/<class>/*.png, test/<class>/*.png) "
        "or an .npz with x_train, y_train, x_test, y_test in [0, 1]",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        help="or a built-in data set the model was trained on (default att-faces, 46x56)",
    )
    p.add_argument(
        "--image-size", type=parse_size, help="AT&T faces or --data folder size WxH, e.g. 92x112"
    )
    p.add_argument("--classes", type=parse_classes, help="classes to invert, e.g. 0-9 or 1,5,7")
    p.add_argument("--out", default="invguard-report", help="report folder")
    add_common(p)
    add_miface(p)
    p.set_defaults(handler=cmd_attack)


def _attack_data(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The private data: ``--data`` (the user's folder or .npz) or a built-in ``--dataset``."""
    if args.data is None:
        name = args.dataset or "att-faces"
        return load_dataset(name, args.image_size), name if args.image_size is None else None
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


def _test_accuracy(
    model: Any, dataset: Any, normalize: tuple[list[float], list[float]] | None = None
) -> float:
    from invguard.models.training import accuracy

    if normalize is None:
        return accuracy(model, dataset.x_test, dataset.y_test)
    from invguard.targets import TorchTarget

    owner = TorchTarget(model, input_shape=dataset.image_shape, normalize=normalize)
    return float((owner.predict(dataset.x_test).argmax(1) == dataset.y_test).mean())


def cmd_attack(args: argparse.Namespace) -> int:
    """Invert the user's own PyTorch model."""
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
    return run_and_report(
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
