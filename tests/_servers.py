"""Shared helpers for tests that serve real models over loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from invguard.gateway.model_server import (
    PREDICT_PATH,
    ServerStats,
    create_model_app,
    serve_in_thread,
    server_stats,
)

API_KEY = "sk-test-5f2d0c9e8b7a4d1e"


def torch_predict_proba(model: nn.Module) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
    """Softmax probabilities of a logit-returning module, as a server's ``predict_proba``."""
    model.eval()

    def predict(x: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.no_grad():
            out: NDArray[np.float32] = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
        return out

    return predict


@dataclass
class FakeClock:
    """A monotonic clock that only moves when told; ``sleep`` advances it and records waits."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Served:
    url: str  # the predict URL
    base: str
    stats: ServerStats


@contextmanager
def serve_model(
    model: nn.Module, *, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any
) -> Iterator[Served]:
    """Serve ``model`` with :func:`create_model_app` on a free loopback port."""
    app = create_model_app(
        torch_predict_proba(model), input_shape=input_shape, num_classes=num_classes, **kwargs
    )
    with serve_in_thread(app) as base:
        yield Served(url=base + PREDICT_PATH, base=base, stats=server_stats(app))
