"""DP-SGD with Opacus (Abadi et al., CCS 2016): per-sample gradient clipping and Gaussian noise,
Poisson sampling of the batches, and the RDP accountant to pick the noise for a target epsilon."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invguard.errors import MissingDependencyError, ModelError

ACCOUNTANT = "rdp"


def _opacus() -> Any:
    try:
        import opacus
    except ImportError as exc:  # pragma: no cover - opacus is part of the dev environment
        raise MissingDependencyError("opacus", "dp") from exc
    return opacus


def _one_line(text: str) -> str:
    return " ".join(text.split())


def opacus_problems(model: nn.Module) -> list[tuple[str, str]]:
    """Opacus' own objections to training ``model`` with DP-SGD, as ``(layer, reason)`` pairs
    (``('features.2 (BatchNorm2d)', 'BatchNorm cannot support ...')``); empty when compatible."""
    _opacus()
    from opacus.utils.module_utils import trainable_modules
    from opacus.validators import ModuleValidator

    was_training = model.training
    model.train()
    try:
        problems = []
        for name, sub in trainable_modules(model):
            check = ModuleValidator.VALIDATORS.get(type(sub))
            for err in check(sub) if check is not None else []:
                problems.append((f"{name} ({type(sub).__name__})", _one_line(str(err))))
        if not problems:  # anything the validator knows that is not tied to one layer
            problems = [
                ("model", _one_line(str(e))) for e in ModuleValidator.validate(model, strict=False)
            ]
    finally:
        model.train(was_training)
    return problems


def check_opacus_compatible(model: nn.Module, what: str = "the model") -> None:
    """Raise :class:`ModelError` with Opacus' explanation, on one line, if ``model`` cannot be
    trained with DP-SGD (e.g. it has BatchNorm layers)."""
    problems = opacus_problems(model)
    if not problems:
        return
    layers = [where for where, _ in problems]
    listed = ", ".join(layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")
    reasons = list(dict.fromkeys(reason for _, reason in problems))
    raise ModelError(
        f"{what} cannot be trained with DP-SGD: Opacus rejects {len(layers)} layer"
        f"{'s' if len(layers) != 1 else ''} ({listed}): {' '.join(reasons)} "
        "(opacus.validators.ModuleValidator.fix(model) replaces BatchNorm with GroupNorm)"
    )


def train_dp(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float,
    delta: float,
    max_grad_norm: float,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    sampler_generator: torch.Generator,
    noise_generator: torch.Generator,
) -> dict[str, Any]:
    """Train ``model`` in place with DP-SGD to ``(epsilon, delta)``; returns what was spent.

    The noise multiplier is the smallest that the RDP accountant allows for ``epochs`` passes at
    sample rate ``batch_size / n``; batches are Poisson samples drawn from ``sampler_generator``,
    the noise from ``noise_generator``.
    """
    _opacus()
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.ascontiguousarray(y)).long()
    loader = DataLoader(
        TensorDataset(xt, yt), batch_size=batch_size, shuffle=False, generator=sampler_generator
    )
    params = list(model.parameters())
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    model.train()
    with warnings.catch_warnings():
        # "Secure RNG turned off": intended, the training is seeded for reproducibility
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        warnings.filterwarnings("ignore", message=".*[Oo]ptimal order.*")
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        try:
            dp_model, dp_opt, dp_loader = engine.make_private_with_epsilon(
                module=model,
                optimizer=opt,
                data_loader=loader,
                target_epsilon=epsilon,
                target_delta=delta,
                epochs=epochs,
                max_grad_norm=max_grad_norm,
                noise_generator=noise_generator,
            )
        except (NotImplementedError, ValueError) as exc:
            raise ModelError(
                f"Opacus cannot make the model private: {_one_line(str(exc))}"
            ) from exc
        steps = skipped = 0
        start = time.perf_counter()
        for _ in range(epochs):
            for xb, yb in dp_loader:
                if len(yb) == 0:  # an empty Poisson sample: nothing to learn from, nothing released
                    skipped += 1
                    continue
                loss = F.cross_entropy(dp_model(xb), yb)
                dp_opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                dp_opt.step()
                steps += 1
        seconds = time.perf_counter() - start
        spent = float(engine.get_epsilon(delta))
    if hasattr(dp_model, "to_standard_module"):
        dp_model.to_standard_module()  # removes Opacus' hooks and per-sample gradients
    model.eval()
    sample_rate = 1.0 / len(dp_loader)
    return {
        "epsilon_spent": spent,
        "epsilon_target": epsilon,
        "delta": delta,
        "noise_multiplier": float(dp_opt.noise_multiplier),
        "max_grad_norm": max_grad_norm,
        "sample_rate": sample_rate,
        "expected_batch_size": round(sample_rate * len(yt), 2),
        "steps": steps,
        "empty_batches": skipped,
        "accountant": ACCOUNTANT,
        "seconds_training": seconds,
        "finite": bool(all(math.isfinite(float(p.detach().abs().sum())) for p in params)),
    }
