"""The shared attack base: its final ``run`` does the bookkeeping, an attack only searches.

A tiny attack written here (random images scored by a counting numpy target) shows what
:class:`AttackBase` does around ``_search``: capability refusal, classes, seeds, the time budget,
query counting, timing, and a clear error when the search returns the wrong shapes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from invguard.attacks import (
    ATTACKS,
    Attack,
    AttackBase,
    InversionRequest,
    SearchContext,
    SearchOutcome,
)
from invguard.attacks.generative import GENERATIVE_ATTACKS
from invguard.errors import InvalidParameterError, TargetError
from invguard.targets import Capability

SHAPE = (1, 4, 4)


class _Counting:
    """A numpy target: fixed random linear scores, one query per input image."""

    def __init__(self, capabilities: frozenset[Capability] | None = None) -> None:
        self.capabilities = capabilities or frozenset(
            {Capability.LABELS, Capability.SCORES, Capability.PROBABILITIES}
        )
        self.num_classes = 3
        self.input_shape = SHAPE
        self.queries = 0
        self.weight = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        self.queries += len(x)
        logits = np.asarray(x, np.float32).reshape(len(x), -1) @ self.weight
        e = np.exp(logits - logits.max(1, keepdims=True))
        out: NDArray[np.float32] = e / e.sum(1, keepdims=True)
        return out


@dataclass(frozen=True, kw_only=True)
class _Probe(AttackBase):
    """Score ``steps`` random batches, keep the last; ``broken`` spoils one field of the outcome."""

    name: ClassVar[str] = "probe"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.SCORES})

    steps: int = 3
    broken: str = ""

    def _search(self, ctx: SearchContext) -> SearchOutcome:
        n = len(ctx.classes)
        x = torch.zeros(n, *SHAPE)
        done, reason = 0, "max_iterations"
        for _ in range(self.steps):
            if ctx.expired():
                reason = "time_budget"
                break
            x = torch.rand(n, *SHAPE, generator=ctx.torch_generator)
            ctx.target.predict(x.numpy())
            done += 1
            if ctx.progress is not None:
                ctx.progress(done, self.steps)
        conf = ctx.target.predict(x.numpy())[np.arange(n), ctx.classes]
        fields: dict[str, Any] = {
            "reconstructions": x,
            "target_confidence": conf,
            "iterations": np.full(n, done),
            "stop_reasons": [reason] * n,
        }
        if self.broken == "reconstructions":
            fields["reconstructions"] = x[:, 0]
        elif self.broken == "target_confidence":
            fields["target_confidence"] = conf[:-1]
        elif self.broken == "iterations":
            fields["iterations"] = np.full((n, 2), done)
        elif self.broken == "stop_reasons":
            fields["stop_reasons"] = reason
        elif self.broken == "not numeric":
            fields["target_confidence"] = ["high"] * n
        elif self.broken == "not an outcome":
            return fields  # type: ignore[return-value]
        return SearchOutcome(**fields, extra={"mean_pixel": float(x.mean())})


@dataclass(frozen=True, kw_only=True)
class _Checked(_Probe):
    """An attack with a precondition of its own: it needs auxiliary images."""

    name: ClassVar[str] = "checked"

    def _check(self, target: Any, request: InversionRequest) -> None:
        if request.auxiliary is None:
            raise InvalidParameterError(f"attack '{self.name}' needs auxiliary images")


def test_the_base_counts_queries_resolves_classes_and_records_the_config() -> None:
    target = _Counting()
    target.predict(np.zeros((5, *SHAPE), np.float32))  # queries made before the run do not count
    calls: list[tuple[int, int]] = []
    result = _Probe(steps=4).run(
        target,
        InversionRequest(classes=[2, 0]),
        rng=0,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result.attack == "probe"
    assert result.classes.tolist() == [2, 0]
    assert result.classes.dtype == np.int64
    assert result.queries == 4 * 2 + 2 == target.queries - 5
    assert result.reconstructions.shape == (2, *SHAPE)
    assert result.reconstructions.dtype == np.float32
    assert result.target_confidence.dtype == np.float32
    assert result.iterations.dtype == np.int64
    assert result.iterations.tolist() == [4, 4]
    assert result.stop_reasons == ("max_iterations", "max_iterations")
    assert result.config == {"steps": 4, "broken": ""}
    assert result.extra == {"mean_pixel": pytest.approx(float(result.reconstructions.mean()))}
    assert result.seconds >= 0.0
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    everything = _Probe().run(_Counting(), InversionRequest(), rng=0)
    assert everything.classes.tolist() == [0, 1, 2]


def test_seed_is_recorded_for_an_int_and_none_for_a_generator() -> None:
    by_seed = [_Probe().run(_Counting(), InversionRequest(), rng=s) for s in (7, 7, 8)]
    assert by_seed[0].seed == 7
    assert np.array_equal(by_seed[0].reconstructions, by_seed[1].reconstructions)
    assert not np.array_equal(by_seed[0].reconstructions, by_seed[2].reconstructions)
    gen = np.random.default_rng(7)
    from_gen = _Probe().run(_Counting(), InversionRequest(), rng=gen)
    assert from_gen.seed is None
    assert np.array_equal(from_gen.reconstructions, by_seed[0].reconstructions)
    with pytest.raises(InvalidParameterError, match="The 'rng' parameter"):
        _Probe().run(_Counting(), InversionRequest(), rng=-1)


def test_the_torch_generator_is_made_only_when_used() -> None:
    """An attack that draws nothing leaves the caller's Generator where it was."""
    gen = np.random.default_rng(3)
    _Probe(steps=0).run(_Counting(), InversionRequest(), rng=gen)
    assert gen.integers(10**9) == np.random.default_rng(3).integers(10**9)


def test_the_time_budget_stops_the_search_through_ctx_expired() -> None:
    started = time.perf_counter()
    result = _Probe(steps=10**9).run(_Counting(), InversionRequest(max_seconds=0.2), rng=0)
    assert result.stop_reasons == ("time_budget",) * 3
    assert 0 < int(result.iterations[0]) < 10**9
    assert 0.2 <= result.seconds < time.perf_counter() - started + 1e-9
    assert result.seconds < 2.0


def test_a_target_lacking_a_capability_is_refused_before_any_query() -> None:
    target = _Counting(frozenset({Capability.LABELS}))
    with pytest.raises(
        TargetError,
        match=r"^attack 'probe' needs scores from the target, which offers only labels$",
    ):
        _Probe().run(target, InversionRequest(), rng=0)
    assert target.queries == 0


def test_bad_classes_and_the_check_hook_are_refused_before_any_query() -> None:
    target = _Counting()
    with pytest.raises(InvalidParameterError, match="class index 3 is out of range"):
        _Probe().run(target, InversionRequest(classes=[3]), rng=0)
    with pytest.raises(InvalidParameterError, match=r"^attack 'checked' needs auxiliary images$"):
        _Checked().run(target, InversionRequest(), rng=0)
    assert target.queries == 0
    aux = np.zeros((2, *SHAPE), np.float32)
    assert _Checked().run(target, InversionRequest(auxiliary=aux), rng=0).attack == "checked"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("reconstructions", "returned reconstructions of shape (3, 4, 4) for 3 classes"),
        ("target_confidence", "returned target_confidence of shape (2,) for 3 classes"),
        ("iterations", "returned iterations of shape (3, 2) for 3 classes"),
        ("stop_reasons", "returned stop_reasons 'max_iterations' for 3 classes"),
        ("not numeric", "returned target_confidence that is not a numeric array"),
        ("not an outcome", "returned dict from _search instead of a SearchOutcome"),
    ],
)
def test_a_search_returning_the_wrong_shapes_is_a_clear_error(broken: str, message: str) -> None:
    with pytest.raises(RuntimeError) as info:
        _Probe(broken=broken).run(_Counting(), InversionRequest(), rng=0)
    text = str(info.value)
    assert text.startswith(f"attack 'probe' {message}")
    assert text.endswith("this is a bug in the attack")
    assert "\n" not in text


def test_configs_stay_frozen_keyword_only_and_run_is_final() -> None:
    attack = _Probe(steps=2)
    assert isinstance(attack, Attack)
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.steps = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Probe(2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"overrides AttackBase\.run, which is final"):

        class _Rogue(_Probe):
            def run(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return None


@pytest.mark.parametrize("cls", [*ATTACKS.values(), *GENERATIVE_ATTACKS.values()])
def test_every_image_attack_uses_the_base(cls: type[AttackBase]) -> None:
    assert issubclass(cls, AttackBase)
    assert cls.run is AttackBase.run
    assert isinstance(cls(), Attack)
