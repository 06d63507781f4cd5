"""The training loop shared by the training-time defences.

It follows :func:`invguard.models.training.train_classifier` step for step (same optimiser, cosine
schedule, per-epoch permutation and augmentation drawn from one explicit ``torch.Generator``), so
that a defence with its regulariser switched off reproduces the reference target bit for bit. The
only addition is the loss: a callable that sees the batch and the epoch, so a defence can add a
regulariser or change the smoothing factor as training proceeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from invguard.models.training import TrainConfig, augment_batch

# (images, labels, epoch) -> scalar loss; epochs count from 0
BatchLoss = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``config`` (as in ``train_classifier``)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def fit(
    model: nn.Module,
    params: list[nn.Parameter],
    x: np.ndarray,
    y: np.ndarray,
    *,
    config: TrainConfig,
    generator: torch.Generator,
    loss_fn: BatchLoss,
    frozen: Iterable[nn.Module] = (),
) -> float:
    """Train ``params`` of ``model`` on ``(x, y)``; returns the seconds spent.

    ``frozen`` modules stay in eval mode (batch-norm statistics of frozen layers do not move).
    """
    opt = make_optimizer(params, config)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.ascontiguousarray(y)).long()
    n = len(yt)
    steps = config.epochs * math.ceil(n / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    frozen = list(frozen)
    start = time.perf_counter()
    model.train()
    for m in frozen:
        m.eval()
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, config.batch_size):
            idx = perm[i : i + config.batch_size]
            xb = xt[idx]
            if config.augment is not None:
                xb = augment_batch(xb, config.augment, generator)
            loss = loss_fn(xb, yt[idx], epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
    model.eval()
    return time.perf_counter() - start
