"""Fixtures for the gateway tests: a digits model as the backend, configs, live gateways."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from invguard.gateway.app import Backend, Gateway, running_gateway
from invguard.gateway.config import LoadedGatewayConfig, hash_api_key, parse_gateway_config
from invguard.models import TrainedModel
from tests._servers import torch_predict_proba

KEYS = {
    "alice": "sk-alice-7c1e93a0d4b25f68e2",
    "bob": "sk-bob-0b8f2d6e4a1c937f5d",
    "mallory": "sk-mallory-5e2a9c0f7b3d148e6a",
}


def merge(base: dict[str, Any], over: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """``base`` with ``over`` merged in, recursively for mappings (``model`` is replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not (top and k == "model"):
            out[k] = merge(out[k], v, top=False)
        else:
            out[k] = copy.deepcopy(v)
    return out


def raw_config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    """A gateway config for the digits MLP (the backend is passed to tests directly)."""
    base: dict[str, Any] = {
        "model": {"type": "pytorch", "reference": {"arch": "mlp", "data": "digits"}},
        "keys": [{"id": name, "sha256": hash_api_key(key)} for name, key in KEYS.items()],
        "rate_limit": None,
        "detection": {"seed": 3},
        "alerts": {"audit_log": str(tmp_path / "audit.db")},
    }
    return merge(base, over)


@pytest.fixture
def digits_backend(digits_mlp: TrainedModel) -> Backend:
    return Backend(torch_predict_proba(digits_mlp.model), (1, 8, 8), 10, "digits MLP")


GatewayFactory = Callable[..., AbstractContextManager[tuple[str, Gateway]]]


@pytest.fixture
def serve_gateway(tmp_path: Path, digits_backend: Backend) -> GatewayFactory:
    """``with serve_gateway(**config_overrides, gateway_kwargs={...}) as (base_url, gateway)``."""

    @contextmanager
    def make(
        gateway_kwargs: dict[str, Any] | None = None, **over: Any
    ) -> Iterator[tuple[str, Gateway]]:
        loaded = load(tmp_path, **over)
        kwargs = {"backend": digits_backend, **(gateway_kwargs or {})}
        with running_gateway(loaded, **kwargs) as served:
            yield served

    return make


def load(tmp_path: Path, **over: Any) -> LoadedGatewayConfig:
    return parse_gateway_config(raw_config(tmp_path, **over), tmp_path / "gateway.yaml")


def inputs(n: int = 2, value: float = 0.5) -> list[Any]:
    out: list[Any] = np.full((n, 1, 8, 8), value).tolist()
    return out
