"""Training image priors on public images: DCGAN (GMI) and PLG-MI's conditional GAN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from invguard.data.mnist import load_mnist
from invguard.errors import InvalidParameterError
from invguard.models import ModelCache
from invguard.priors.base import ImagePrior
from invguard.priors.train import (
    GanConfig,
    diff_augment,
    max_margin_loss,
    pseudo_label,
    train_conditional_prior,
    train_prior,
)

SHAPE = (1, 28, 28)
TINY = GanConfig(size=32, ngf=8, ndf=8, steps=60, batch_size=32, hflip=False)


@pytest.fixture(scope="module")
def mnist59() -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits 5-9 (2,500 images) in [0, 1]: the public images of the GMI digit protocol."""
    x, y = load_mnist()
    keep = y >= 5
    return x[keep], y[keep] - 5


@pytest.fixture(scope="module")
def trained(mnist59: tuple[np.ndarray, np.ndarray]) -> ImagePrior:
    return train_prior(mnist59[0], shape=SHAPE, config=TINY, seed=0)


def _latents(n: int, dim: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(99))


# ------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "The 'steps' parameter must be an int >= 1, got 0"),
        ("nz", 2.5, "The 'nz' parameter must be an int, got float 2.5"),
        ("batch_size", 1, "The 'batch_size' parameter must be an int >= 2, got 1"),
        ("n_critic", 0, "The 'n_critic' parameter must be an int >= 1, got 0"),
        ("lr_g", 0.0, "The 'lr_g' parameter must be a float > 0.0, got 0.0"),
        ("lr_d", -1.0, "The 'lr_d' parameter must be a float > 0.0, got -1.0"),
        ("target_weight", -0.1, "The 'target_weight' parameter must be a float >= 0.0"),
        ("size", 48, "The 'size' parameter must be None, 32 or 64, got 48"),
        ("augment", "yes", "The 'augment' parameter must be a bool, got str 'yes'"),
        ("hflip", 1, "The 'hflip' parameter must be a bool, got int 1"),
    ],
)
def test_config_names_the_bad_field(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        GanConfig(**{field: value})  # type: ignore[arg-type]
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_config_resolves_size_from_the_images() -> None:
    assert GanConfig().resolved((28, 28)).size == 32
    assert GanConfig().resolved((32, 20)).size == 32
    assert GanConfig().resolved((56, 46)).size == 64
    assert GanConfig(size=64).resolved((28, 28)).size == 64


# -------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("images", "shape", "message"),
    [
        (np.zeros((16, 28, 28), np.float32), SHAPE, "must be a 4-D"),
        (np.zeros((4, 1, 28, 28), np.float32), SHAPE, "at least 8 images, got 4"),
        (np.zeros((16, 3, 28, 28), np.float32), SHAPE, "must have 1 channel(s)"),
        (np.full((16, 1, 28, 28), np.nan, np.float32), SHAPE, "finite values"),
        (np.full((16, 1, 28, 28), 255.0, np.float32), SHAPE, "must lie in value_range"),
        (np.zeros((16, 1, 28, 28), np.float32), (2, 28, 28), "The 'shape' parameter"),
    ],
)
def test_bad_images_are_refused_in_one_line(
    images: np.ndarray, shape: tuple[int, int, int], message: str
) -> None:
    with pytest.raises(
        InvalidParameterError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as err:
        train_prior(images, shape=shape, config=TINY)
    assert "\n" not in str(err.value)


def test_bad_labels_and_classifier_output_are_refused() -> None:
    x = np.random.default_rng(0).random((16, *SHAPE), dtype=np.float32)
    cfg = GanConfig(size=32, ngf=4, ndf=4, steps=1, batch_size=8)
    with pytest.raises(InvalidParameterError, match=r"ints in \[0, 3\)"):
        train_conditional_prior(
            x, np.arange(16) % 4, num_classes=3, classifier=None, shape=SHAPE, config=cfg
        )
    with pytest.raises(InvalidParameterError, match="one label per image"):
        train_conditional_prior(
            x, np.zeros(15, np.int64), num_classes=3, classifier=None, shape=SHAPE, config=cfg
        )
    with pytest.raises(InvalidParameterError, match=r"to \(8, 3\) logits, got \(8, 2\)"):
        train_conditional_prior(
            x,
            np.arange(16) % 3,
            num_classes=3,
            classifier=lambda b: b.flatten(1)[:, :2],
            shape=SHAPE,
            config=cfg,
        )


# ------------------------------------------------------------------------------- components


def test_pseudo_label_takes_the_top_images_of_each_class() -> None:
    probs = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.2, 0.7, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.1, 0.8],
            [0.5, 0.45, 0.05],
        ]
    )
    idx, lab = pseudo_label(probs, 2)
    assert idx.tolist() == [0, 2, 1, 4, 3, 1]
    assert lab.tolist() == [0, 0, 1, 1, 2, 2]
    # image 1 is among the best for classes 1 and 2, once each
    assert sorted(np.flatnonzero(idx == 1).tolist()) == [2, 5]
    idx, lab = pseudo_label(probs, 5)  # every image, once per class
    assert all(sorted(idx[lab == c].tolist()) == [0, 1, 2, 3, 4] for c in range(3))


def test_pseudo_label_validates() -> None:
    with pytest.raises(InvalidParameterError, match="must be an int <= 2"):
        pseudo_label(np.ones((2, 3)), 3)
    with pytest.raises(
        InvalidParameterError, match="The 'per_class' parameter must be an int >= 1"
    ):
        pseudo_label(np.ones((2, 3)), 0)
    with pytest.raises(InvalidParameterError, match="2-D"):
        pseudo_label(np.ones(3), 1)
    with pytest.raises(InvalidParameterError, match="finite"):
        pseudo_label(np.array([[np.nan, 1.0]]), 1)


def test_max_margin_loss_is_the_negative_margin() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 2])
    # sample 0: -(3 - 2) = -1; sample 1: -(1 - 5) = 4
    assert max_margin_loss(logits, y).item() == pytest.approx(1.5)


def test_diff_augment_is_seeded_batched_and_differentiable() -> None:
    x = (
        torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ).requires_grad_()
    a = diff_augment(x, torch.Generator().manual_seed(1), hflip=True)
    b = diff_augment(x, torch.Generator().manual_seed(1), hflip=True)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    a.sum().backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None
    assert float(x.grad.abs().sum()) > 0
    plain = diff_augment(x, torch.Generator(), translation=False, color=False)
    assert torch.equal(plain, x)


# --------------------------------------------------------------------------------- training


def test_trained_prior_draws_in_the_target_space_and_its_critic_knows_digits(
    trained: ImagePrior, mnist59: tuple[np.ndarray, np.ndarray]
) -> None:
    assert trained.latent_dim == TINY.nz
    assert trained.discriminator is not None
    assert not trained.conditional
    out = trained(_latents(16, trained.latent_dim))
    assert out.shape == (16, *SHAPE)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    assert trained.info["source"] == f"trained by InvGuard on {len(mnist59[0])} public images"
    assert trained.info["steps"] == TINY.steps
    assert trained.info["cached"] is False
    assert trained.info["seconds"] > 0
    real = torch.from_numpy(mnist59[0][:256]) * 2 - 1
    real = torch.nn.functional.interpolate(real, size=(32, 32), mode="bilinear", antialias=True)
    noise = torch.rand(256, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        score_real = trained.realism(real)
        score_noise = trained.realism(noise)
    assert score_real is not None
    assert score_noise is not None
    assert float(score_real.mean()) > float(score_noise.mean()) + 0.5


def test_training_is_deterministic_and_leaves_the_global_rng_alone(
    trained: ImagePrior, mnist59: tuple[np.ndarray, np.ndarray]
) -> None:
    state = torch.get_rng_state()
    again = train_prior(mnist59[0], shape=SHAPE, config=TINY, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    for (k, a), b in zip(
        trained.generator.state_dict().items(), again.generator.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    other = train_prior(
        mnist59[0][:256], shape=SHAPE, config=GanConfig(size=32, ngf=8, ndf=8, steps=2), seed=1
    )
    z = _latents(4, TINY.nz)
    assert not torch.equal(trained(z), other(z))


def test_trained_prior_is_cached_and_reloaded(
    mnist59: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path)
    x = mnist59[0][:256]
    cfg = GanConfig(size=32, ngf=8, ndf=8, steps=10, batch_size=32)
    first = train_prior(x, shape=SHAPE, config=cfg, seed=2, cache=cache)
    assert first.info["cached"] is False
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 1
    calls: list[int] = []
    second = train_prior(
        x, shape=SHAPE, config=cfg, seed=2, cache=cache, progress=lambda i, n: calls.append(i)
    )
    assert second.info["cached"] is True
    assert calls == []  # loaded, not trained
    assert second.info["seconds"] == first.info["seconds"]
    z = _latents(8, cfg.nz)
    assert torch.equal(first(z), second(z))
    assert first.discriminator is not None
    assert second.discriminator is not None
    with torch.no_grad():
        r1, r2 = first.realism(first.decode(z)), second.realism(second.decode(z))
    assert r1 is not None
    assert r2 is not None
    assert torch.equal(r1, r2)
    # another seed, other images, other value range: other entries
    train_prior(x, shape=SHAPE, config=cfg, seed=3, cache=cache)
    train_prior(x[:128], shape=SHAPE, config=cfg, seed=2, cache=cache)
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 3


def test_conditional_prior_is_guided_by_the_target(
    mnist59: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = mnist59[0][:512], mnist59[1][:512]
    lin = nn.Linear(28 * 28, 5)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.05)
        lin.bias.zero_()
    lin.requires_grad_(False)
    seen: list[tuple[int, ...]] = []

    def classifier(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        out: torch.Tensor = lin(batch.flatten(1))
        return out

    cache = ModelCache(tmp_path)
    cfg = GanConfig(size=32, ngf=8, ndf=8, steps=8, batch_size=32, hflip=False)
    prior = train_conditional_prior(
        x, y, num_classes=5, classifier=classifier, shape=SHAPE, config=cfg, cache=cache
    )
    assert prior.conditional
    assert prior.num_classes == 5
    assert seen
    assert all(s == (32, *SHAPE) for s in seen)  # the target sees its own input space
    assert lin.weight.grad is None  # the target's parameters are left alone
    assert not (tmp_path / "models").exists()  # a classifier without a fingerprint: no cache
    z = _latents(6, cfg.nz).repeat(2, 1)
    ys = torch.tensor([0] * 6 + [3] * 6)
    out = prior(z, ys)
    assert out.shape == (12, *SHAPE)
    assert float((out[:6] - out[6:]).abs().mean()) > 1e-3  # the class changes the image
    with pytest.raises(InvalidParameterError, match="conditional"):
        prior(z)
    first = train_conditional_prior(
        x, y, num_classes=5, classifier=classifier, shape=SHAPE, config=cfg, cache=cache,
        classifier_fingerprint="lin-0",
    )  # fmt: skip
    again = train_conditional_prior(
        x, y, num_classes=5, classifier=classifier, shape=SHAPE, config=cfg, cache=cache,
        classifier_fingerprint="lin-0",
    )  # fmt: skip
    assert first.info["cached"] is False
    assert again.info["cached"] is True
    assert first.info["target_guided"] is True
    assert torch.equal(first(z, ys), again(z, ys))
    assert torch.equal(first(z, ys), prior(z, ys))  # same seed, same training
