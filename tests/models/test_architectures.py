from __future__ import annotations

import pytest
import torch

from invguard.errors import InvalidParameterError
from invguard.models import ARCHITECTURES, build_model
from invguard.models.architectures import describe_mismatch


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 56, 46), (1, 112, 92)])
def test_every_architecture_maps_images_to_logits_and_features(
    arch: str, shape: tuple[int, int, int]
) -> None:
    model = build_model(arch, shape, 7, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(1))
    assert model(x).shape == (3, 7)
    feats = model.embed(x)
    assert feats.ndim == 2
    assert torch.allclose(model.head(feats), model(x), atol=1e-5)


def test_initialisation_comes_from_the_generator_not_the_global_rng() -> None:
    a = build_model("cnn", (1, 56, 46), 40, generator=torch.Generator().manual_seed(3))
    b = build_model("cnn", (1, 56, 46), 40, generator=torch.Generator().manual_seed(3))
    c = build_model("cnn", (1, 56, 46), 40, generator=torch.Generator().manual_seed(4))
    for (_, pa), (_, pb), (_, pc) in zip(
        a.state_dict().items(), b.state_dict().items(), c.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb)
        if pa.ndim == 4:
            assert not torch.equal(pa, pc)


def test_softmax_regression_starts_at_zero() -> None:
    model = build_model("softmax", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0))
    assert all(float(p.detach().abs().sum()) == 0.0 for p in model.parameters())


def test_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(InvalidParameterError, match=r"'arch' parameter must be one of .*mlp"):
        build_model("resnet", (1, 8, 8), 10)


def test_describe_mismatch_explains_image_size_and_class_count() -> None:
    small = build_model("mlp", (1, 56, 46), 40).state_dict()
    big = build_model("mlp", (1, 112, 92), 40)
    assert "trained on another image size" in describe_mismatch(big, small)
    other = build_model("mlp", (1, 56, 46), 10)
    assert "40 classes" in describe_mismatch(other, small)
    assert "missing" in describe_mismatch(build_model("cnn", (1, 56, 46), 40), small)
    assert describe_mismatch(build_model("mlp", (1, 56, 46), 40), small) == ""
