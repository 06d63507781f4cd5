"""Your own PyTorch model, assessed three ways: exported program, factory plus weights, and ONNX.

The model is a CNN of its own design (``examples/my_cnn.py``: conv, batch norm, GELU, dropout; not
an InvGuard reference architecture), trained here on the AT&T faces (46x56 grey, 40 people). It is
saved as

* ``mine.pt2``, a ``torch.export`` program (a graph plus raw weights: InvGuard loads it without
  unpickling anything), attacked white-box with gradients: IF-GMI in the latent space and the
  intermediate features of the public face generator, the attack ``auto`` picks for a model with
  convolutions (MI-FACE's pixel-space
  search finds nothing in a CNN, see the README);
* ``mine.safetensors``, weights for the factory ``my_cnn:build`` (your own code, rebuilt by
  InvGuard), attacked the same way: same predictions and the same reconstructions as the program;
* ``mine.onnx`` (when ``torch.onnx.export`` works here), attacked as a black box from its scores
  with MI-FACE-ZO: ONNX models are black-box targets in InvGuard;

and each attack gets the judges' verdict. Everything is written into ``--out``, including
``faces.npz`` so that the command line can attack the same files afterwards.

    .venv/bin/python examples/your_own_model.py --quick --out mine
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from invguard.api import invert, verdict
from invguard.attacks import MIFaceZO
from invguard.attacks.generative import IFGMI
from invguard.data import ImageDataset, load_att_faces
from invguard.errors import InvGuardError
from invguard.models.loading import load_user_model
from invguard.priors import load_public_face_prior

HERE = Path(__file__).resolve().parent
FACTORY = "my_cnn:build"  # examples/my_cnn.py, found because HERE is the factory's search path


def train(data: ImageDataset, *, epochs: int, width: int, seed: int = 0) -> nn.Module:
    """Stand-in for your own training code; the model is returned in eval mode."""
    sys.path.insert(0, str(HERE))
    from my_cnn import build

    torch.manual_seed(seed)
    model = build(width=width)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 32):
            idx = order[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def save_all(model: nn.Module, data: ImageDataset, out: Path) -> list[str]:
    """The three files a user would ship (ONNX only if it exports), the data as an ``.npz``."""
    example = torch.zeros((2, *data.image_shape))
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, out / "mine.pt2")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "mine.safetensors"))
    np.savez(
        out / "faces.npz",
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        class_names=np.asarray(data.class_names),
    )
    saved = ["mine.pt2", "mine.safetensors", "faces.npz"]
    try:
        from invguard.targets.onnx import export_torch_to_onnx

        export_torch_to_onnx(model, data.image_shape, out / "mine.onnx")
        saved.append("mine.onnx")
    except InvGuardError as exc:  # a missing optional package, or an exporter failure
        print(f"note: ONNX skipped ({exc})")
    return saved


def verdict_line(label: str, judged: Any, seconds: float) -> str:
    s = judged.summary()
    return (
        f"VERDICT {label}: top-1 {s['verdict_top1']:.3f} ({s['identities_reconstructed']} of "
        f"{s['identities']} identities; chance {s['chance_top1']:.3f}), top-5 "
        f"{s['verdict_top5']:.3f} [{seconds:.0f}s]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", help="folder for the model files (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="fewer epochs, steps and classes")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="invguard-mine-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    t0 = time.perf_counter()
    data = load_att_faces()  # your private training data: an ImageDataset, see from_arrays
    epochs, width = (8, 12) if args.quick else (15, 16)
    model = train(data, epochs=epochs, width=width)
    saved = save_all(model, data, out)
    x_test = torch.from_numpy(data.x_test)
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1).numpy() == data.y_test).mean())
    print(f"trained MyCNN (width {width}, {epochs} epochs): held-out accuracy {accuracy:.3f}")
    print(f"saved to {out}: " + ", ".join(saved))

    # what InvGuard loads: the program carries its own architecture; the weights need the factory
    shape, k = data.image_shape, data.num_classes
    program, _ = load_user_model(out / "mine.pt2", shape=shape, num_classes=k)
    factory_model, _ = load_user_model(
        out / "mine.safetensors",
        factory=FACTORY,
        kwargs={"width": width},
        search_path=HERE,
        shape=shape,
        num_classes=k,
    )
    with torch.no_grad():
        scores = {"program": program(x_test), "factory": factory_model(x_test)}
    predictions = {k: v.argmax(1).numpy() for k, v in scores.items()}
    onnx_target = None
    if "mine.onnx" in saved:
        from invguard.targets.onnx import OnnxTarget

        onnx_target = OnnxTarget(out / "mine.onnx", num_classes=k)
        predictions["onnx"] = onnx_target.predict(data.x_test).argmax(1)
    agree = all(np.array_equal(p, predictions["program"]) for p in predictions.values())
    gap = float((scores["program"] - scores["factory"]).abs().max())
    print(
        f"predictions on the {len(data.y_test)} held-out faces: "
        + ", ".join(predictions)
        + (" agree" if agree else " DISAGREE")
        + f" (largest logit gap program vs factory {gap:.2e})"
    )

    # (a) and (b): white-box IF-GMI with the public face generator, the same seed on both sources
    classes = list(range(10)) if args.quick else None
    white = IFGMI(steps=20, pool_size=256) if args.quick else IFGMI()
    prior = load_public_face_prior(data.image_shape)
    results = {}
    sources = {
        "program": ("(a) mine.pt2", program),
        "factory": (f"(b) {FACTORY} + mine.safetensors", factory_model),
    }
    for label, (name, source) in sources.items():
        t = time.perf_counter()
        result = invert(
            source,
            input_shape=data.image_shape,
            attack=white,
            classes=classes,
            prior=prior,
            rng=0,
        )
        judged = verdict(result, data, target=source)
        results[label] = result
        print(verdict_line(f"{name}, white-box IF-GMI", judged, time.perf_counter() - t))
    diff = float(
        np.abs(results["program"].reconstructions - results["factory"].reconstructions).max()
    )
    print(f"reconstructions program vs factory: largest pixel difference {diff:.2e}")

    # (c): the ONNX file as a black box, from its scores only
    if onnx_target is not None:
        t = time.perf_counter()
        zo_classes = list(range(5)) if args.quick else list(range(10))
        zo = MIFaceZO(max_iterations=60 if args.quick else 300)
        result = invert(onnx_target, attack=zo, classes=zo_classes, rng=0)
        judged = verdict(result, data)
        print(
            verdict_line("(c) mine.onnx, black-box MI-FACE-ZO", judged, time.perf_counter() - t)
            + f", {onnx_target.queries} queries"
        )
    print(f"done in {time.perf_counter() - t0:.0f}s; try the command line on the same files:")
    print(f"  invguard attack --model {out / 'mine.pt2'} --dataset att-faces --attack auto")
    print(
        f"  PYTHONPATH={HERE} invguard attack --factory {FACTORY} --factory-kwargs "
        f"'{{\"width\": {width}}}' --model {out / 'mine.safetensors'} --dataset att-faces "
        "--attack auto"
    )
    print(
        f"  invguard attack --model {out / 'mine.pt2'} --data {out / 'faces.npz'} --attack auto"
        "   (your own data: the judges are trained on it once, then cached)"
    )


if __name__ == "__main__":
    main()
