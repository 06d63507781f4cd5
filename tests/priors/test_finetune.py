"""Adapting the public face prior to the attacker's grey public photos (few-shot GAN adaptation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from invguard.data import load_builtin_auxiliary
from invguard.errors import InvalidParameterError
from invguard.models import ModelCache
from invguard.priors import ImagePrior, load_public_face_prior
from invguard.priors.finetune import AdaptConfig, adapt_prior

pytestmark = pytest.mark.slow

SHAPE = (1, 56, 46)
# a dozen fast steps at a high learning rate: enough to move the grey level, not a usable prior
TINY = AdaptConfig(
    steps=12, batch_size=8, size=32, ndf=8, frozen_blocks=2, lr_g=1e-3, lr_d=1e-3, ema=0.0
)


@pytest.fixture(scope="module")
def public() -> np.ndarray:
    """The 100 grey AT&T photos of s31-s40 (the faces30 protocol's public images)."""
    return load_builtin_auxiliary("att-faces-public10")


@pytest.fixture(scope="module")
def base() -> ImagePrior:
    return load_public_face_prior(SHAPE)


@pytest.fixture(scope="module")
def adapted(base: ImagePrior, public: np.ndarray) -> ImagePrior:
    return adapt_prior(base, public, config=TINY, seed=0)


def _draw(prior: ImagePrior, n: int = 64) -> np.ndarray:
    z = prior.sample_latents(n, torch.Generator().manual_seed(7))
    with torch.no_grad():
        return prior(z).numpy()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "The 'steps' parameter must be an int >= 1, got 0"),
        ("batch_size", 1, "The 'batch_size' parameter must be an int >= 2, got 1"),
        ("frozen_blocks", -1, "The 'frozen_blocks' parameter must be an int >= 0, got -1"),
        ("lr_g", 0.0, "The 'lr_g' parameter must be a float > 0.0, got 0.0"),
        ("size", 48, "The 'size' parameter must be 32 or 64, got 48"),
        ("ema", 1.0, "The 'ema' parameter must be a float"),
        ("hflip", 1, "The 'hflip' parameter must be a bool, got int 1"),
    ],
)
def test_config_names_the_bad_field(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        AdaptConfig(**{field: value})  # type: ignore[arg-type]
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_bad_inputs_are_refused_in_one_line(base: ImagePrior, public: np.ndarray) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: adapt_prior(base, public, config=AdaptConfig(frozen_blocks=5)), "frozen_blocks"),
        (lambda: adapt_prior(base, public[:, :, :, :, None]), "images"),
        (lambda: adapt_prior(base, np.repeat(public, 3, axis=1)), "images"),
        (lambda: adapt_prior(base, public, seed=-1), "seed"),
        (lambda: adapt_prior("public-faces", public), "prior"),  # type: ignore[arg-type]
        (lambda: adapt_prior(base, public, config={"steps": 3}), "config"),  # type: ignore[arg-type]
    ]
    for call, field in cases:
        with pytest.raises(InvalidParameterError, match=f"'{field}'") as err:
            call()
        assert "\n" not in str(err.value)


def test_adaptation_moves_the_images_toward_the_public_photos(
    base: ImagePrior, adapted: ImagePrior, public: np.ndarray
) -> None:
    """The mean image of the adapted prior is closer to the public photos' mean image (grey
    level and layout) than the pretrained one's, and so is its mean grey level (pretrained
    0.33, public photos 0.43; measured: 0.41 after these 12 steps)."""
    target = public.mean(axis=0)
    drawn, ours = _draw(base), _draw(adapted)
    before = float(np.sqrt(((drawn.mean(axis=0) - target) ** 2).mean()))
    after = float(np.sqrt(((ours.mean(axis=0) - target) ** 2).mean()))
    assert after < 0.8 * before, (before, after)
    grey = float(public.mean())
    assert abs(float(ours.mean()) - grey) < 0.5 * abs(float(drawn.mean()) - grey)
    assert adapted.shape == SHAPE
    assert adapted.name == "public-faces-adapted"
    assert adapted.discriminator is not None
    assert adapted.info["steps"] == 12
    assert adapted.info["seconds"] > 0
    assert "adapted by InvGuard to 100 public images" in adapted.info["source"]


def test_frozen_blocks_keep_their_weights_and_the_input_prior_is_untouched(
    base: ImagePrior, adapted: ImagePrior
) -> None:
    fresh = load_public_face_prior(SHAPE).generator.state_dict()
    for name, tensor in base.generator.state_dict().items():
        assert torch.equal(tensor, fresh[name]), name
    new = adapted.generator.state_dict()
    for name in ("main.0.weight", "main.1.weight", "main.3.weight", "main.4.bias"):
        assert torch.equal(new[name], fresh[name]), name
    assert not torch.equal(new["main.6.weight"], fresh["main.6.weight"])


def test_adaptation_is_deterministic_and_cached(
    base: ImagePrior, adapted: ImagePrior, public: np.ndarray, tmp_path: Path
) -> None:
    """The same seed gives the same generator (the global RNG neither used nor seeded); the
    cache gives it back without training."""
    cache = ModelCache(tmp_path)
    state = torch.get_rng_state()
    first = adapt_prior(base, public, config=TINY, seed=0, cache=cache)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(_draw(first), _draw(adapted))
    hit = adapt_prior(base, public, config=TINY, seed=0, cache=cache)
    assert first.info["cached"] is False
    assert hit.info["cached"] is True
    assert hit.info["cache_key"] == first.info["cache_key"]
    np.testing.assert_array_equal(_draw(hit), _draw(adapted))
    other = adapt_prior(base, public, config=dataclasses.replace(TINY, steps=2), seed=1)
    assert not np.array_equal(_draw(other), _draw(adapted))
