"""Generative-prior attacks: losses, validation, budgets and the search on a real digits model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invguard.attacks import InversionRequest
from invguard.attacks.generative import (
    FINAL_STEPS,
    GMI,
    IFGMI,
    PLGMI,
    PPA,
    _Search,
    align_candidates,
    identity_loss,
    project_l1_ball,
    random_transform,
)
from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError, TargetError
from invguard.models import TrainedModel
from invguard.priors import DCGANGenerator, ImagePrior, OutputMap
from invguard.targets import TorchTarget


class _LinearGenerator(torch.nn.Module):
    """A stand-in prior for unit tests: a fixed random linear map from latents to 8x8 images."""

    def __init__(self, nz: int, classes: int | None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(64, nz, generator=gen) / nz**0.5)
        self.embed = torch.nn.Parameter(torch.randn(classes or 1, nz, generator=gen))
        self.classes = classes

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes is not None:
            assert y is not None
            z = z + self.embed[y]
        return torch.tanh(2.0 * z @ self.weight.T).view(-1, 1, 8, 8)


def _prior(
    shape: tuple[int, int, int], *, discriminator: bool = False, classes: int | None = None
) -> ImagePrior:
    disc = None
    if discriminator:
        torch_gen = torch.Generator().manual_seed(1)
        disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1))
        for p in disc.parameters():
            p.data.normal_(0.0, 0.1, generator=torch_gen)
    return ImagePrior(
        generator=_LinearGenerator(16, classes),
        latent_dim=16,
        output_map=OutputMap(shape=shape),
        name="random-linear",
        num_classes=classes,
        discriminator=disc,
    )


def test_identity_losses_prefer_the_right_class() -> None:
    logits = torch.tensor([[5.0, 1.0, 0.0], [0.0, 4.0, 1.0]])
    right, wrong = torch.tensor([0, 1]), torch.tensor([2, 0])
    for kind in ("cross_entropy", "margin", "poincare"):
        good, bad = identity_loss(logits, right, kind), identity_loss(logits, wrong, kind)
        assert (good < bad).all(), kind
    assert identity_loss(logits, right, "margin").tolist() == [-4.0, -3.0]
    assert (identity_loss(logits, right, "poincare") >= 0).all()


def test_random_transform_is_seeded_and_keeps_shape() -> None:
    x = torch.rand(6, 1, 12, 10, generator=torch.Generator().manual_seed(0))
    a = random_transform(x, torch.Generator().manual_seed(1), min_scale=0.8, hflip=True)
    b = random_transform(x, torch.Generator().manual_seed(1), min_scale=0.8, hflip=True)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, x)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"loss": "l1"}, "loss"),
        ({"min_crop": 0.1}, "min_crop"),
        ({"candidates": 0}, "candidates"),
        ({"latent_bound": 0.0}, "latent_bound"),
        ({"feature_layers": (2, 1)}, "feature_layers"),
        ({"feature_layers": [1]}, "feature_layers"),
        ({"feature_layers": (0,)}, "feature_layers"),
        ({"feature_radius": 0.0}, "feature_radius"),
        ({"feature_steps": 0}, "feature_steps"),
        ({"rounds": 0}, "rounds"),
        ({"tune_steps": 0}, "tune_steps"),
        ({"tune_step_size": -1.0}, "tune_step_size"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"'{field}'"):
        PPA(**kwargs)  # type: ignore[arg-type]


def test_prior_problems_are_one_line_errors(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    with pytest.raises(InvalidParameterError, match="needs an image prior"):
        PPA().run(target, InversionRequest(), rng=0)
    with pytest.raises(InvalidParameterError, match="shape"):
        PPA().run(target, InversionRequest(prior=_prior((1, 28, 28))), rng=0)
    with pytest.raises(InvalidParameterError, match="class-conditional"):
        PLGMI().run(target, InversionRequest(prior=_prior(digits.image_shape)), rng=0)
    with pytest.raises(InvalidParameterError, match="discriminator"):
        GMI().run(target, InversionRequest(prior=_prior(digits.image_shape)), rng=0)

    class NoGrad:
        capabilities = target.capabilities
        num_classes, input_shape, queries = 10, digits.image_shape, 0
        predict = target.predict

    with pytest.raises(TargetError):
        PPA().run(NoGrad(), InversionRequest(prior=_prior(digits.image_shape)), rng=0)


def test_search_raises_confidence_in_one_batch_and_is_deterministic(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    prior = _prior(digits.image_shape)
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    start = PPA(steps=1, pool_size=0, step_size=1e-6).run(
        target, InversionRequest(prior=prior), rng=3
    )
    attack = PPA(steps=40, candidates=2, pool_size=64, select_transforms=2)
    result = attack.run(target, InversionRequest(prior=prior), rng=3)
    again = attack.run(target, InversionRequest(prior=prior), rng=3)
    assert np.array_equal(result.reconstructions, again.reconstructions)
    assert result.reconstructions.shape == (10, *digits.image_shape)
    assert result.target_confidence.mean() > 0.9 > start.target_confidence.mean()
    # pool 64 + 40 steps x 20 latents x 2 views + selection (20 x 1 + 20 x 2) + final 10
    assert result.queries == 64 + 40 * 20 * 2 + 20 + 40 + 10
    assert result.stop_reasons == ("max_iterations",) * 10
    assert result.extra["prior"]["name"] == "random-linear"


def test_budgets_stop_early_and_still_return_images(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    prior = _prior(digits.image_shape, discriminator=True)
    limited = TorchTarget(digits_mlp.model, input_shape=digits.image_shape, query_budget=300)
    res = GMI(steps=500).run(limited, InversionRequest(prior=prior, classes=[1, 2]), rng=0)
    assert res.stop_reasons == ("query_budget",) * 2
    assert res.reconstructions.shape[0] == 2
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    timed = PPA(steps=100_000).run(target, InversionRequest(prior=prior, max_seconds=0.5), rng=0)
    assert timed.stop_reasons[0] == "time_budget"
    assert int(timed.iterations[0]) < 100_000


def test_conditional_prior_search(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    prior = _prior(digits.image_shape, classes=10)
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    start = PLGMI(steps=1, pool_size=0, step_size=1e-6).run(
        target, InversionRequest(prior=prior), rng=0
    )
    res = PLGMI(steps=30, pool_size=100).run(target, InversionRequest(prior=prior), rng=0)
    assert res.target_confidence.mean() > 0.6 > start.target_confidence.mean() + 0.3


def test_l1_projection_lands_on_the_ball_and_keeps_points_inside() -> None:
    v = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    radius = torch.tensor([1.0, 2.0, 5.0, 0.5, 1000.0])
    p = project_l1_ball(v, radius)
    norms = p.reshape(5, -1).abs().sum(1)
    assert torch.allclose(norms[:4], radius[:4], rtol=1e-5)
    assert torch.equal(p[4], v[4])  # already inside
    # the projection is the closest point of the ball: no random point of the ball is closer
    for i in range(4):
        pts = torch.randn(2000, 48, generator=torch.Generator().manual_seed(i))
        pts = pts / pts.abs().sum(1, keepdim=True) * radius[i]
        closest = (pts - v[i].reshape(1, -1)).norm(dim=1).min()
        assert (p[i] - v[i]).norm() <= closest + 1e-6


def _dcgan_prior(shape: tuple[int, int, int]) -> ImagePrior:
    g = DCGANGenerator(nz=16, ngf=8, channels=1, size=32)
    with torch.no_grad():
        for prm in g.parameters():
            prm.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(0))
    return ImagePrior(
        generator=g, latent_dim=16, output_map=OutputMap(shape=shape), name="random-dcgan"
    )


def test_generator_features_split_and_rejoin_exactly() -> None:
    prior = _dcgan_prior((1, 8, 8))
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    whole = prior.decode(z)
    assert prior.feature_blocks == 3
    for k in range(4):
        h = prior.features(z, None, k)
        assert torch.allclose(prior.decode_features(h, k), whole, atol=1e-6)
    h1 = prior.features(z, None, 1)
    assert torch.allclose(prior.carry(h1, 1, 3), prior.features(z, None, 3), atol=1e-6)
    with pytest.raises(InvalidParameterError, match="0 to 3"):
        prior.features(z, None, 4)
    assert _prior((1, 8, 8)).feature_blocks == 0


def test_feature_stage_raises_confidence_within_the_ball(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    prior = _dcgan_prior(digits.image_shape)
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    base = PPA(steps=5, pool_size=64).run(target, InversionRequest(prior=prior), rng=0)
    staged = PPA(
        steps=5,
        pool_size=64,
        feature_layers=(2, 3),
        feature_steps=10,
        feature_step_size=0.05,
        feature_radius=0.2,
    ).run(target, InversionRequest(prior=prior), rng=0)
    assert staged.target_confidence.mean() > base.target_confidence.mean() + 0.05
    assert int(staged.iterations[0]) == 5 + 2 * 10
    with pytest.raises(InvalidParameterError, match=r"'feature_layers'.*not a DCGAN"):
        PPA(feature_layers=(1,)).run(
            target, InversionRequest(prior=_prior(digits.image_shape)), rng=0
        )


def test_ifgmi_on_a_prior_without_features_is_ppa(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    prior = _prior(digits.image_shape)  # not a DCGAN: no intermediate features to search
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    ifgmi = IFGMI(steps=5, pool_size=32).run(target, InversionRequest(prior=prior), rng=1)
    ppa = PPA(steps=5, pool_size=32, candidates=2, final="mean").run(
        target, InversionRequest(prior=prior), rng=1
    )
    assert ifgmi.extra["feature_layers"] == []
    assert np.array_equal(ifgmi.reconstructions, ppa.reconstructions)
    staged = IFGMI(steps=5, pool_size=32).run(
        target, InversionRequest(prior=_dcgan_prior(digits.image_shape)), rng=1
    )
    assert staged.extra["feature_layers"] == [2, 3]
    assert int(staged.iterations[0]) == 5 + 2 * IFGMI.feature_steps


def test_generator_tuning_pulls_the_pivots_to_the_reconstructions(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    prior = _dcgan_prior(digits.image_shape)
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    cfg = IFGMI(
        steps=5, pool_size=64, feature_step_size=0.05, feature_radius=0.2, tune_step_size=1e-3
    )
    search = _Search(
        cfg, target, prior, torch.arange(4), torch.Generator().manual_seed(0), None, None
    )
    z, raw, reason = search.search_round()
    before = [p.clone() for p in prior.generator.parameters()]
    tuned, tune_reason = search.tune_prior(z, raw)
    goal = prior.output_map(raw)
    with torch.no_grad():
        gap_before = F.mse_loss(prior(z), goal).item()
        gap_after = F.mse_loss(tuned(z), goal).item()
    assert (reason, tune_reason) == ("max_iterations", "max_iterations")
    assert gap_after < 0.7 * gap_before  # measured: 0.53 of it
    assert all(torch.equal(a, b) for a, b in zip(before, prior.generator.parameters(), strict=True))
    assert not any(p.requires_grad for p in tuned.generator.parameters())


def test_second_round_runs_on_the_tuned_generator(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    prior = _dcgan_prior(digits.image_shape)
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    kw: dict[str, object] = {"steps": 5, "pool_size": 64, "feature_radius": 0.2}
    one = IFGMI(**kw).run(target, InversionRequest(prior=prior), rng=0)  # type: ignore[arg-type]
    two = IFGMI(**kw, rounds=2, tune_steps=10).run(  # type: ignore[arg-type]
        target, InversionRequest(prior=prior), rng=0
    )
    assert (one.extra["rounds"], two.extra["rounds"]) == (1, 2)
    assert int(two.iterations[0]) == 2 * int(one.iterations[0])
    assert two.target_confidence.mean() > one.target_confidence.mean()
    stopped = IFGMI(**kw, rounds=3).run(  # type: ignore[arg-type]
        target, InversionRequest(prior=prior, max_seconds=1e-9), rng=0
    )
    assert stopped.extra["rounds"] == 1
    assert stopped.stop_reasons[0] == "time_budget"


def test_final_mean_averages_each_class_candidates(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    seen: list[torch.Tensor] = []

    class Recording(_Search):
        def select(self, x: torch.Tensor, reason: str) -> tuple[torch.Tensor, torch.Tensor, str]:
            seen.append(x.clone())
            return super().select(x, reason)

    @dataclass(frozen=True, kw_only=True)
    class RecordingPPA(PPA):
        def _search_type(self) -> type[_Search]:
            return Recording

    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    request = InversionRequest(prior=_prior(digits.image_shape), classes=[1, 4])
    res = RecordingPPA(steps=5, candidates=3, pool_size=64, final="mean").run(
        target, request, rng=0
    )
    expected = seen[0].view(2, 3, *digits.image_shape).mean(1)
    assert np.allclose(res.reconstructions, expected.numpy(), atol=1e-6)
    assert res.extra["final"] == "mean"
    probs = target.predict(res.reconstructions)
    assert np.allclose(res.target_confidence, probs[[0, 1], [1, 4]], atol=1e-5)
    # pool 64 + 5 steps x 6 latents x 2 views + one final look at the 2 averages
    assert res.queries == 64 + 5 * 6 * 2 + 2
    with pytest.raises(InvalidParameterError, match="'final'"):
        PPA(final="median")  # type: ignore[arg-type]


def test_align_candidates_undoes_a_shift_and_a_mirror() -> None:
    gen = torch.Generator().manual_seed(0)
    base = F.avg_pool2d(torch.rand(3, 1, 24, 20, generator=gen), 3, 1, 1)  # smooth, like faces
    moved = base.roll(2, dims=-1).flip(-1)  # two pixels right, then mirrored
    aligned = align_candidates(torch.stack([base, moved], 1))
    inner = (..., slice(3, -3), slice(3, -3))  # away from the edges the shift replicates
    assert torch.allclose(aligned[:, 1][inner], base[inner], atol=1e-6)
    assert torch.equal(aligned[:, 0], base)
    assert torch.equal(align_candidates(base[:, None]), base[:, None])  # one candidate: as is


def test_the_cli_offers_every_final_step() -> None:
    from invguard.cli._inversion import FINAL_CHOICES

    assert FINAL_CHOICES == FINAL_STEPS


def test_the_cli_builds_ppdg_with_its_rounds() -> None:
    import argparse

    from invguard.attacks.generative import GENERATIVE_ATTACKS, PPDG
    from invguard.attacks.priors_setup import GENERATIVE_NAMES
    from invguard.cli._inversion import ATTACK_CHOICES, add_miface, attack_from_args

    parser = argparse.ArgumentParser()
    add_miface(parser)
    attack = attack_from_args(parser.parse_args(["--rounds", "3", "--steps", "7"]), "ppdg")
    assert isinstance(attack, PPDG)
    assert (attack.rounds, attack.steps) == (3, 7)
    assert (PPDG().rounds, IFGMI().rounds) == (2, 1)
    assert set(GENERATIVE_ATTACKS) == set(GENERATIVE_NAMES) <= set(ATTACK_CHOICES)
