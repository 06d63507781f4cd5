"""The short Python API: invert a model, judge the result, write a report.

>>> from invguard.api import invert, judge, verdict
>>> result = invert(my_model, input_shape=(1, 56, 46), rng=0)          # doctest: +SKIP
>>> metrics = judge(result, dataset)                                    # doctest: +SKIP
>>> judgement = verdict(result, dataset, target=my_model)              # doctest: +SKIP
>>> judgement.summary()["verdict_top1"]                                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from torch import nn

from invguard.attacks.base import Attack, AttackResult, InversionRequest, ProgressFn
from invguard.attacks.miface import MIFace
from invguard.data.base import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.judges import Judgement, JudgePanel, judge_run, reference_panel
from invguard.judges.reference import reference_evaluator
from invguard.metrics.evaluate import Evaluator, InversionMetrics, evaluate_inversion
from invguard.models.cache import ModelCache, default_cache_dir
from invguard.priors import ImagePrior
from invguard.report.inversion import InversionReport
from invguard.targets.base import Target
from invguard.targets.pytorch import NormalizeSpec, OutputKind, TorchTarget


@contextmanager
def preserved_mode(model: object) -> Iterator[None]:
    """Restore every submodule's train/eval flag of a ``torch.nn.Module`` on exit."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def invert(
    model: nn.Module | Target,
    *,
    input_shape: tuple[int, ...] | None = None,
    output: OutputKind = "logits",
    normalize: NormalizeSpec | None = None,
    attack: Attack | None = None,
    classes: Sequence[int] | None = None,
    auxiliary: np.ndarray | None = None,
    prior: ImagePrior | None = None,
    rng: np.random.Generator | int = 0,
    progress: ProgressFn | None = None,
) -> AttackResult:
    """Run ``attack`` (MI-FACE with its measured defaults if None) against a model or target.

    A bare ``torch.nn.Module`` is wrapped in a :class:`TorchTarget` (``input_shape`` required;
    ``output`` says whether it returns ``"logits"``, ``"probabilities"`` or
    ``"log_probabilities"``; ``normalize=(mean, std)`` when it takes ``(x - mean) / std`` per
    channel, while the attack works in pixel space [0, 1]); it runs in eval mode and gets its own
    train/eval mode back after.
    ``prior`` is the image generator for the generative-prior attacks (``IFGMI``, ``PPA``,
    ``GMI``, ``PLGMI``).
    """
    with preserved_mode(model):
        if isinstance(model, nn.Module):
            if input_shape is None:
                raise InvalidParameterError(
                    "The 'input_shape' parameter is required to wrap a torch.nn.Module, "
                    "e.g. (1, 56, 46)"
                )
            target: Target = TorchTarget(
                model, input_shape=input_shape, output=output, normalize=normalize
            )
        else:
            if normalize is not None:
                raise InvalidParameterError(
                    "The 'normalize' parameter applies to a torch.nn.Module; pass it to the "
                    "target instead, e.g. TorchTarget(model, ..., normalize=(mean, std))"
                )
            target = model
        atk: Attack = attack if attack is not None else MIFace()
        request = InversionRequest(classes=classes, auxiliary=auxiliary, prior=prior)
        return atk.run(target, request, rng=rng, progress=progress)


def judge(
    result: AttackResult,
    dataset: ImageDataset,
    *,
    evaluator: Evaluator | None = None,
    cache: ModelCache | None = None,
) -> InversionMetrics:
    """Leakage metrics of ``result`` against ``dataset``'s private images (see :mod:`invguard.metrics`)."""
    if evaluator is None:
        evaluator, _ = reference_evaluator(dataset, cache=cache)
    return evaluate_inversion(result, evaluator, dataset)


def verdict(
    result: AttackResult,
    dataset: ImageDataset,
    *,
    target: nn.Module | Target | None = None,
    panel: JudgePanel | None = None,
    cache: ModelCache | None = None,
    public: NDArray[np.float32] | None = None,
) -> Judgement:
    """Every judge, the calibration rows and the verdict for ``result`` (see :mod:`invguard.judges`).

    With ``target`` (the attacked model) the artefact row is crafted against it. With the
    attacker's ``public`` images the default panel is open-set (a look-alike of them is no hit)
    and the public look-alike calibration row is added.
    """
    if panel is None:
        cache = cache if cache is not None else ModelCache(default_cache_dir())
        panel, _, _ = reference_panel(dataset, cache=cache, public=public)
    with preserved_mode(target):
        if isinstance(target, nn.Module):
            target = TorchTarget(target, input_shape=dataset.image_shape)
        return judge_run(
            panel, dataset, result.reconstructions, result.classes, target, public=public
        )


def write_report(
    out_dir: str | Path,
    *,
    result: AttackResult,
    metrics: InversionMetrics,
    dataset: ImageDataset,
    target_info: dict[str, Any],
    evaluator_info: dict[str, Any],
    judgement: Judgement | None = None,
    title: str = "InvGuard model inversion report",
) -> dict[str, Path]:
    """Write the HTML, JSON and gallery of one run into ``out_dir``."""
    report = InversionReport(
        title=title,
        dataset=dataset,
        target=target_info,
        evaluator=evaluator_info,
        result=result,
        metrics=metrics,
        judgement=judgement,
    )
    return report.write(out_dir)


__all__ = ["invert", "judge", "preserved_mode", "reference_evaluator", "verdict", "write_report"]
