"""The attack contract: a frozen keyword-only config, the capabilities it needs, and ``run``.

``run(target, request, *, rng) -> AttackResult`` always returns an :class:`AttackResult`, whatever
the attack and its settings, so that metrics, reports and the assessment treat all attacks alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError
from invguard.targets.base import Capability, Target

if TYPE_CHECKING:
    from invguard.priors.base import ImagePrior

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called as an attack advances (e.g. to drive a progress bar)."""


@dataclass(frozen=True, kw_only=True)
class InversionRequest:
    """What to reconstruct, and the attacker's side knowledge.

    ``classes``: the classes (identities) to invert, all of them when None.
    ``auxiliary``: images the attacker holds that are *not* the private training data (e.g. public
    faces), shape ``(m, *input_shape)`` in the target's value range; used for start points and priors.
    ``max_seconds``: a time budget; an attack that reaches it stops and returns its best so far
    (stop reason ``"time_budget"``). Query budgets are enforced by the target itself
    (``query_budget``): an attack that hits one also returns its best so far
    (stop reason ``"query_budget"``).
    ``prior``: an image generator trained on public data (:class:`~invguard.priors.ImagePrior`), for
    the generative-prior attacks (GMI, PPA, PLG-MI).
    """

    classes: Sequence[int] | None = None
    auxiliary: NDArray[np.float32] | None = None
    max_seconds: float | None = None
    prior: ImagePrior | None = None

    def __post_init__(self) -> None:
        if self.max_seconds is not None and not (
            isinstance(self.max_seconds, int | float) and self.max_seconds > 0
        ):
            raise InvalidParameterError(
                f"The 'max_seconds' parameter must be a float > 0, got {self.max_seconds!r}"
            )

    def resolve_classes(self, num_classes: int) -> NDArray[np.int64]:
        if self.classes is None:
            return np.arange(num_classes, dtype=np.int64)
        cls = np.asarray(list(self.classes))
        if cls.ndim != 1 or cls.size == 0 or not np.issubdtype(cls.dtype, np.integer):
            raise InvalidParameterError(
                f"The 'classes' parameter must be a non-empty list of ints, got {self.classes!r}"
            )
        bad = cls[(cls < 0) | (cls >= num_classes)]
        if bad.size:
            raise InvalidParameterError(
                f"class index {int(bad[0])} is out of range: the target has {num_classes} classes "
                f"(0 to {num_classes - 1})"
            )
        return cls.astype(np.int64)


@dataclass
class AttackResult:
    """One attack run: a reconstruction per requested class and what it cost."""

    attack: str
    classes: NDArray[np.int64]
    reconstructions: NDArray[np.float32]
    target_confidence: NDArray[np.float32]
    iterations: NDArray[np.int64]
    stop_reasons: tuple[str, ...]
    queries: int
    seconds: float
    config: dict[str, Any]
    seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description without the image arrays."""
        reasons: dict[str, int] = {}
        for r in self.stop_reasons:
            reasons[r] = reasons.get(r, 0) + 1
        return {
            "attack": self.attack,
            "classes": self.classes.tolist(),
            "target_confidence": [round(float(c), 6) for c in self.target_confidence],
            "mean_target_confidence": float(np.mean(self.target_confidence)),
            "iterations": self.iterations.tolist(),
            "stop_reasons": reasons,
            "queries": self.queries,
            "seconds": round(self.seconds, 4),
            "config": self.config,
            "seed": self.seed,
            **({"extra": self.extra} if self.extra else {}),
        }


@runtime_checkable
class Attack(Protocol):
    """A model inversion attack: a frozen keyword-only dataclass with ``name``, ``requires`` and ``run``."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[Capability]]

    def run(
        self,
        target: Target,
        request: InversionRequest,
        *,
        rng: np.random.Generator | int,
        progress: ProgressFn | None = None,
    ) -> AttackResult: ...


def as_generator(rng: np.random.Generator | int) -> tuple[np.random.Generator, int | None]:
    """Accept a Generator or an int seed (recorded in results); anything else is refused."""
    if isinstance(rng, np.random.Generator):
        return rng, None
    if isinstance(rng, int) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(rng), rng
    raise InvalidParameterError(
        f"The 'rng' parameter must be a numpy.random.Generator or an int >= 0, got {rng!r}"
    )


def config_dict(config: object) -> dict[str, Any]:
    """A frozen attack config as a JSON-ready dict."""
    assert dataclasses.is_dataclass(config)
    assert not isinstance(config, type)
    return dataclasses.asdict(config)
