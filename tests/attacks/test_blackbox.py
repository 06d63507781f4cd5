"""MIFaceZO (black-box MI-FACE by zeroth-order gradients): parameters, query budgets, determinism,
HTTP targets, and the accuracy it reaches on the real AT&T faces through each kind of output.

Faces numbers (``benchmarks/bench_blackbox.py``, seed 0, 40 identities, faces MLP, judged by the
evaluation model): each bound below sits just under the measurement.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pytest
import torch

from invguard.attacks import InversionRequest, MIFaceZO
from invguard.attacks.blackbox import rounding_step, visible_scores
from invguard.data import ImageDataset
from invguard.defenses import LabelOnly, RoundScores, TopK
from invguard.errors import InvalidParameterError, TargetError
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models import TrainedModel
from invguard.targets import HttpTarget, OutputSpec, TorchTarget
from tests._servers import serve_model

DIGITS = (1, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"directions": 0}, "The 'directions' parameter must be an int >= 1, got 0"),
        ({"directions": 1.5}, "The 'directions' parameter must be an int, got float 1.5"),
        (
            {"estimator": "adam"},
            "The 'estimator' parameter must be one of 'nes', 'spsa', got 'adam'",
        ),
        ({"pooling": "mean"}, "The 'pooling' parameter must be one of 'jacobian', 'none', got"),
        ({"sigma": 0.0}, "The 'sigma' parameter must be a float > 0.0, got 0.0"),
        ({"downsample": 0}, "The 'downsample' parameter must be an int >= 1, got 0"),
        ({"max_iterations": 0}, "The 'max_iterations' parameter must be an int >= 1, got 0"),
        ({"patience": 0}, "The 'patience' parameter must be an int >= 1, got 0"),
        ({"step_size": -0.1}, "The 'step_size' parameter must be a float > 0.0, got -0.1"),
        (
            {"score_floor": 2.0},
            "The 'score_floor' parameter must be a float in the range (0.0, 1.0]",
        ),
        ({"probe_pairs": -1}, "The 'probe_pairs' parameter must be an int >= 0, got -1"),
        ({"probe_images": 0}, "The 'probe_images' parameter must be an int >= 1, got 0"),
        ({"recycle": 1}, "The 'recycle' parameter must be a bool, got int 1"),
        ({"start": "black"}, "The 'start' parameter must be one of 'grey', 'mean', 'probe'"),
        ({"bounds": (1.0, 0.0)}, "The 'bounds' parameter must be (low, high) with low < high"),
        ({"bounds": (0.0,)}, "The 'bounds' parameter must be (low, high) with low < high"),
        (
            {"start_value": 2.0},
            "The 'start_value' parameter must be a float in the range [0.0, 1.0]",
        ),
    ],
)
def test_parameter_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(message)) as info:
        MIFaceZO(**kwargs)
    assert "\n" not in str(info.value)


def test_config_is_frozen_and_keyword_only() -> None:
    attack = MIFaceZO()
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.sigma = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError):
        MIFaceZO("spsa")  # type: ignore[call-arg]
    assert attack.queries_per_step == 3
    assert MIFaceZO(directions=4).queries_per_step == 9


def _digits_target(model: TrainedModel, **kwargs: Any) -> TorchTarget:
    return TorchTarget(model.model, input_shape=DIGITS, **kwargs)


@pytest.mark.parametrize("budget", [1000, 1001, 1029])
def test_query_budget_is_respected_exactly(digits_mlp: TrainedModel, budget: int) -> None:
    target = _digits_target(digits_mlp, query_budget=budget)
    attack = MIFaceZO(max_iterations=10_000, patience=10_000)
    result = attack.run(target, InversionRequest(), rng=0)
    # every step asks 10 classes x 3 points in one batch; the batch that would pass the budget is
    # refused whole, so the attack stops within one batch of it and never beyond
    assert result.queries == target.queries <= budget
    assert budget - result.queries < 10 * attack.queries_per_step
    assert result.queries % 30 == 0
    assert set(result.stop_reasons) == {"query_budget"}
    assert result.reconstructions.shape == (10, *DIGITS)
    assert np.isfinite(result.reconstructions).all()


def test_query_budget_with_top_k_scores_counts_the_probe(digits_mlp: TrainedModel) -> None:
    target = TopK(k=3).wrap(_digits_target(digits_mlp, query_budget=3000))
    attack = MIFaceZO(probe_images=200, probe_pairs=400, max_iterations=10_000, patience=10_000)
    result = attack.run(target, InversionRequest(), rng=0)
    assert result.extra["probe_queries"] == 200 + 2 * 400
    assert result.queries == target.queries <= 3000
    assert 3000 - result.queries < 30
    assert set(result.stop_reasons) == {"query_budget"}


def test_the_same_seed_gives_the_same_result(digits_mlp: TrainedModel) -> None:
    attack = MIFaceZO(max_iterations=60)
    runs = [
        attack.run(_digits_target(digits_mlp), InversionRequest(), rng=seed) for seed in (3, 3, 4)
    ]
    assert np.array_equal(runs[0].reconstructions, runs[1].reconstructions)
    assert runs[0].queries == runs[1].queries
    assert not np.array_equal(runs[0].reconstructions, runs[2].reconstructions)
    gen_runs = [
        attack.run(_digits_target(digits_mlp), InversionRequest(), rng=np.random.default_rng(7))
        for _ in range(2)
    ]
    assert np.array_equal(gen_runs[0].reconstructions, gen_runs[1].reconstructions)
    assert runs[0].seed == 3
    assert gen_runs[0].seed is None


def test_the_global_torch_rng_is_untouched(digits_mlp: TrainedModel) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MIFaceZO(max_iterations=5).run(_digits_target(digits_mlp), InversionRequest(), rng=0)
    assert torch.equal(torch.rand(3), expected)


def test_classes_time_budget_and_refusals(digits_mlp: TrainedModel) -> None:
    target = _digits_target(digits_mlp)
    result = MIFaceZO(max_iterations=20).run(target, InversionRequest(classes=[7, 2]), rng=0)
    assert result.classes.tolist() == [7, 2]
    assert result.reconstructions.shape == (2, *DIGITS)
    assert result.queries == target.queries == int(result.iterations.sum()) * 3
    assert result.summary()["attack"] == "miface-zo"

    slow = MIFaceZO(max_iterations=100_000, patience=100_000)
    timed = slow.run(_digits_target(digits_mlp), InversionRequest(max_seconds=0.3), rng=0)
    assert set(timed.stop_reasons) == {"time_budget"}

    with pytest.raises(TargetError, match="attack 'miface-zo' needs scores from the target"):
        MIFaceZO().run(LabelOnly().wrap(target), InversionRequest(), rng=0)
    with pytest.raises(InvalidParameterError, match="class index 10 is out of range"):
        MIFaceZO().run(target, InversionRequest(classes=[10]), rng=0)
    with pytest.raises(InvalidParameterError, match="needs auxiliary images"):
        MIFaceZO(start="mean").run(target, InversionRequest(), rng=0)
    with pytest.raises(InvalidParameterError, match="The 'rng' parameter"):
        MIFaceZO().run(target, InversionRequest(), rng=-1)


@pytest.mark.parametrize(
    "attack",
    [
        MIFaceZO(max_iterations=40, estimator="nes", directions=2),
        MIFaceZO(max_iterations=40, pooling="none"),
        MIFaceZO(max_iterations=40, start="probe", probe_images=100, probe_pairs=0),
    ],
)
def test_variants_stay_in_bounds(digits_mlp: TrainedModel, attack: MIFaceZO) -> None:
    target = _digits_target(digits_mlp)
    result = attack.run(target, InversionRequest(), rng=1)
    x = result.reconstructions
    assert np.isfinite(x).all()
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert result.queries == target.queries
    assert ((result.target_confidence >= 0) & (result.target_confidence <= 1)).all()


def test_hidden_scores_and_rounding_step() -> None:
    s = torch.tensor([[0.5, 0.3, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0]])
    v = visible_scores(s)
    assert torch.allclose(v[0], torch.tensor([0.5, 0.3, 0.1, 0.2]))
    assert torch.equal(v[1], s[1])
    assert rounding_step(torch.tensor([[0.25, 0.75]])) == pytest.approx(0.01)
    assert rounding_step(torch.tensor([[0.2, 0.8]])) == pytest.approx(0.1)
    assert rounding_step(torch.tensor([[0.123456789, 0.876543211]])) == 0.0
    assert rounding_step(torch.zeros(1, 3)) == 0.0


def test_through_a_real_http_endpoint(digits_mlp: TrainedModel) -> None:
    """Every query the attack counts reaches the server, and the budget is never passed."""
    with (
        serve_model(digits_mlp.model, input_shape=DIGITS, num_classes=10) as srv,
        HttpTarget(
            srv.url, num_classes=10, input_shape=DIGITS, max_batch=16, query_budget=600
        ) as target,
    ):
        result = MIFaceZO(max_iterations=1000).run(target, InversionRequest(), rng=0)
        assert result.queries == target.queries == srv.stats.served_inputs <= 600
        assert 600 - result.queries < 30
    local = MIFaceZO(max_iterations=1000).run(
        _digits_target(digits_mlp, query_budget=600), InversionRequest(), rng=0
    )
    # same seed, same answers (within float tolerance): the same attack
    assert np.allclose(result.reconstructions, local.reconstructions, atol=1e-3)


# --- the real faces -----------------------------------------------------------------------------

BUDGET = 30_000


@pytest.fixture(scope="module")
def zo_full(
    faces: ImageDataset, faces_mlp: TrainedModel, faces_evaluator: Evaluator
) -> dict[str, Any]:
    target = TorchTarget(faces_mlp.model, input_shape=faces.image_shape, query_budget=BUDGET)
    result = MIFaceZO().run(target, InversionRequest(), rng=0)
    assert result.queries == target.queries <= BUDGET
    return evaluate_inversion(result, faces_evaluator, faces).summary()


@pytest.mark.slow
def test_full_scores_reconstruct_the_faces(zo_full: dict[str, Any]) -> None:
    assert zo_full["top1_accuracy"] >= 0.45  # measured 0.475 (white-box MI-FACE: 0.875)
    assert zo_full["top5_accuracy"] >= 0.7  # measured 0.75


@pytest.mark.slow
def test_rounding_and_label_only_lower_the_accuracy(
    zo_full: dict[str, Any],
    faces: ImageDataset,
    faces_mlp: TrainedModel,
    faces_evaluator: Evaluator,
) -> None:
    """Issue 6's direction on a real model: coarser outputs leak less to the same attack."""
    base = TorchTarget(faces_mlp.model, input_shape=faces.image_shape, query_budget=BUDGET)
    rounded = MIFaceZO().run(RoundScores(decimals=2).wrap(base), InversionRequest(), rng=0)
    assert rounded.queries <= BUDGET
    s = evaluate_inversion(rounded, faces_evaluator, faces).summary()
    assert s["top1_accuracy"] <= 0.2  # measured 0.150 (robust evaluation model)
    assert s["top1_accuracy"] < zo_full["top1_accuracy"] - 0.25
    with pytest.raises(TargetError, match="needs scores"):
        MIFaceZO().run(LabelOnly().wrap(base), InversionRequest(), rng=0)


def test_output_spec_capabilities_drive_the_probe(digits_mlp: TrainedModel) -> None:
    """Full probabilities skip the probe; truncated or rounded scores pay for it."""
    full = MIFaceZO(max_iterations=2).run(_digits_target(digits_mlp), InversionRequest(), rng=0)
    assert full.extra["probe_queries"] == 0
    assert (
        OutputSpec(top_k=3).capabilities()
        == TopK(k=3).wrap(_digits_target(digits_mlp)).capabilities
    )
