"""Invert your own PyTorch classifier with InvGuard's Python API, in a few lines.

Here "your model" is a small CNN trained on the spot on scikit-learn's digits; replace it with your
own ``torch.nn.Module`` (in eval mode, inputs in [0, 1]) and your own private images.

    .venv/bin/python examples/invert_your_model.py [--out invguard-example]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from invguard.api import invert, judge, reference_evaluator, write_report
from invguard.attacks import MIFace
from invguard.data import load_digits_dataset
from invguard.models import ModelCache, default_cache_dir


def train_your_model(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Stand-in for the user's own training code."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="invguard-example")
    args = parser.parse_args()

    data = load_digits_dataset()  # your private training data: images in [0, 1], (n, c, h, w)
    model = train_your_model(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))

    # 1. attack: MI-FACE, all classes in one batch
    result = invert(model, input_shape=data.image_shape, attack=MIFace(), rng=0)
    # 2. measure: an independent evaluation model judges the reconstructions
    evaluator, evaluator_info = reference_evaluator(data, cache=ModelCache(default_cache_dir()))
    metrics = judge(result, data, evaluator=evaluator)
    print({k: round(v, 3) for k, v in metrics.summary().items()})
    # 3. report: HTML with the gallery, JSON with the numbers
    paths = write_report(
        args.out,
        result=result,
        metrics=metrics,
        dataset=data,
        target_info={"name": "your CNN", "source": "examples/invert_your_model.py"},
        evaluator_info=evaluator_info,
    )
    print("report:", paths["html"])


if __name__ == "__main__":
    main()
