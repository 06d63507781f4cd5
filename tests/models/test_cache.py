from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from invguard.data import ImageDataset
from invguard.errors import ModelError
from invguard.models import ModelCache, TrainConfig, load_state_dict_file, train_target
from invguard.models.cache import cache_key


def test_cache_key_depends_on_every_part() -> None:
    base = dict(role="target", dataset="abc", arch="mlp", config=TrainConfig(), seed=0)
    k = cache_key(**base)
    assert k == cache_key(**base)
    for change in (
        {"dataset": "abd"},
        {"arch": "cnn"},
        {"seed": 1},
        {"config": TrainConfig(epochs=61)},
        {"role": "evaluation"},
    ):
        assert cache_key(**{**base, **change}) != k


def test_trained_model_is_cached_and_reloaded_identically(
    digits: ImageDataset, tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path)
    cfg = TrainConfig(epochs=3)
    first = train_target(digits, "softmax", config=cfg, cache=cache)
    assert not first.from_cache
    files = list((tmp_path / "models").glob("*.safetensors"))
    assert len(files) == 1
    second = train_target(digits, "softmax", config=cfg, cache=cache)
    assert second.from_cache
    assert second.test_accuracy == first.test_accuracy
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    # a damaged entry is retrained, never trusted
    files[0].write_bytes(b"garbage")
    third = train_target(digits, "softmax", config=cfg, cache=cache)
    assert not third.from_cache


def test_concurrent_trainers_of_one_model_train_it_once(
    digits: ImageDataset, tmp_path: Path
) -> None:
    """Two trainers sharing a cache folder (as the parallel test workers do): one trains, the
    other waits on the key's lock and then reads the stored model."""
    cache = ModelCache(tmp_path)
    cfg = TrainConfig(epochs=2)
    key = train_target(digits, "softmax", config=cfg, cache=cache).cache_key
    cache.path(key).unlink()
    results: list[bool] = []

    def train() -> None:
        results.append(train_target(digits, "softmax", config=cfg, cache=cache).from_cache)

    workers = [threading.Thread(target=train) for _ in range(2)]
    with cache.lock(key):  # a third party holds the key: both must wait for it
        for w in workers:
            w.start()
        time.sleep(0.5)
        assert all(w.is_alive() for w in workers)
        assert not cache.path(key).exists()
    for w in workers:
        w.join(timeout=60)
    assert sorted(results) == [False, True]  # trained once, then read from the cache


def test_training_is_deterministic_for_a_seed(digits: ImageDataset) -> None:
    cfg = TrainConfig(epochs=2)
    a = train_target(digits, "cnn", config=cfg, seed=5)
    b = train_target(digits, "cnn", config=cfg, seed=5)
    c = train_target(digits, "cnn", config=cfg, seed=6)
    wa, wb, wc = (m.model.head.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_state_dict_loader_refuses_pickled_code_and_non_state_dicts(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"w": _Evil()}, evil)
    with pytest.raises(ModelError, match=r"pickled Python object .* never unpickles code") as info:
        load_state_dict_file(evil)
    assert "weights_only=False" not in str(info.value)
    assert "\n" not in str(info.value)
    listy = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listy)
    with pytest.raises(ModelError, match="not a state dict"):
        load_state_dict_file(listy)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_state_dict_file(junk)
    with pytest.raises(ModelError, match="not found"):
        load_state_dict_file(tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, good)
    assert torch.equal(load_state_dict_file(good)["w"], torch.ones(2))
