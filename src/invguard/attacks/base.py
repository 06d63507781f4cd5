"""The attack contract: a frozen keyword-only config, the capabilities it needs, and ``run``.

``run(target, request, *, rng, progress=None) -> AttackResult`` always returns an
:class:`AttackResult`, whatever the attack and its settings, so that metrics, reports and the
assessment treat all attacks alike. :class:`Attack` is that contract as a structural protocol.

:class:`AttackBase` implements it once, on the model of Foolbox 3 (Rauber et al., "Foolbox
Native", JOSS 2020), whose ``MinimizationAttack.__call__`` in ``foolbox/attacks/base.py`` is marked
``@final``: it does the bookkeeping (criterion, epsilons, restoring the input type) and an attack
implements only ``run``. Here the final :meth:`AttackBase.run`

1. refuses a target lacking one of the attack's ``requires`` (``invguard.targets.base.require``),
   accepts ``rng`` as a Generator or an int seed (:func:`as_generator`) and resolves the classes;
2. calls the attack's ``_check(target, request)`` hook for its own checks (a white-box target, an
   image prior, auxiliary images), before any query is made and before the clock starts;
3. starts the clock (``seconds``, and the deadline from ``request.max_seconds``) and notes the
   target's query count, then calls ``_search(ctx)`` with a :class:`SearchContext`: the target,
   request, classes, a numpy Generator, a seeded ``torch.Generator`` (made on first use), the
   deadline with :meth:`SearchContext.expired`, and the progress callback;
4. stops the clock, checks the :class:`SearchOutcome` the search returned (one reconstruction of the
   target's input shape, one confidence, one iteration count and one stop reason per class; a
   mismatch is a bug in the attack and raises a one-line ``RuntimeError`` naming it) and builds the
   :class:`AttackResult`: ``queries`` spent during the search, the config, the seed (None for a
   Generator) and the search's ``extra``.

An attack stops on its own when ``ctx.expired()`` (stop reason ``"time_budget"``) or when the
target raises ``QueryBudgetExceededError`` (``"query_budget"``), returning its best so far.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, final, runtime_checkable

import numpy as np
import torch
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError
from invguard.params import as_generator, config_dict, refuse_run_override
from invguard.targets.base import Capability, Target, require

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


def torch_generator(gen: np.random.Generator) -> torch.Generator:
    """A torch CPU generator seeded from ``gen`` (all randomness flows from the attack's ``rng``)."""
    return torch.Generator().manual_seed(int(gen.integers(2**63 - 1)))


@dataclass(frozen=True, kw_only=True, eq=False)
class SearchContext:
    """What :meth:`AttackBase.run` hands to an attack's ``_search``: one run's inputs and budgets.

    ``classes``: the resolved classes (int64, in the order requested). ``rng``: the run's numpy
    Generator. ``deadline``: ``time.perf_counter()`` value at which the time budget ends (None: no
    budget); test it with :meth:`expired`. ``progress``: the caller's callback, if any.
    """

    target: Target
    request: InversionRequest
    classes: NDArray[np.int64]
    rng: np.random.Generator
    deadline: float | None = None
    progress: ProgressFn | None = None

    @cached_property
    def torch_generator(self) -> torch.Generator:
        """A torch CPU generator seeded from :attr:`rng`, made on first use (one draw from ``rng``,
        so an attack that needs no randomness leaves a caller's Generator untouched)."""
        return torch_generator(self.rng)

    def expired(self) -> bool:
        """Whether the time budget (``request.max_seconds``) is spent."""
        return self.deadline is not None and time.perf_counter() > self.deadline


@dataclass(frozen=True, kw_only=True, eq=False)
class SearchOutcome:
    """What an attack's ``_search`` returns; :meth:`AttackBase.run` checks and converts it.

    Per requested class, in order: ``reconstructions`` ``(n, *input_shape)``, ``target_confidence``
    ``(n,)``, ``iterations`` ``(n,)`` and ``stop_reasons`` (n strings). Arrays may be numpy arrays or
    torch tensors (on any device). ``extra``: attack-specific, JSON-ready facts about the run.
    """

    reconstructions: NDArray[Any] | torch.Tensor
    target_confidence: NDArray[Any] | torch.Tensor
    iterations: NDArray[Any] | torch.Tensor
    stop_reasons: Sequence[str]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AttackBase(abc.ABC):
    """The shared base of InvGuard's attacks: a frozen keyword-only config with no fields.

    A subclass sets ``name`` and ``requires``, implements :meth:`_search` and, for checks of its own
    before the search, :meth:`_check`. :meth:`run` is final: it does the bookkeeping described in
    the module docstring and must not be overridden.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[Capability]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        refuse_run_override(cls, "AttackBase", "_search")

    @final
    def run(
        self,
        target: Target,
        request: InversionRequest,
        *,
        rng: np.random.Generator | int,
        progress: ProgressFn | None = None,
    ) -> AttackResult:
        """Invert every requested class of ``target``; see :class:`AttackResult`.

        Final: refuses a target without the ``requires`` capabilities, checks ``rng``, the classes
        and the attack's own preconditions (``_check``), then times and counts the queries of
        ``_search`` and checks what it returns.
        """
        require(target, self.requires, self.name)
        gen, seed = as_generator(rng)
        classes = request.resolve_classes(target.num_classes)
        self._check(target, request)
        queries_before = target.queries
        started = time.perf_counter()
        ctx = SearchContext(
            target=target,
            request=request,
            classes=classes,
            rng=gen,
            deadline=None if request.max_seconds is None else started + request.max_seconds,
            progress=progress,
        )
        outcome = self._search(ctx)
        seconds = time.perf_counter() - started
        queries = target.queries - queries_before
        recon, conf, iters, reasons = _checked_outcome(
            self.name, outcome, len(classes), tuple(target.input_shape)
        )
        return AttackResult(
            attack=self.name,
            classes=classes,
            reconstructions=recon,
            target_confidence=conf,
            iterations=iters,
            stop_reasons=reasons,
            queries=queries,
            seconds=seconds,
            config=config_dict(self),
            seed=seed,
            extra=outcome.extra,
        )

    def _check(self, target: Target, request: InversionRequest) -> None:
        """Attack-specific preconditions, checked before the clock starts (default: none).

        Raise :class:`~invguard.errors.InvalidParameterError` or
        :class:`~invguard.targets.base.TargetError` with a one-line message naming the attack.
        """
        return None

    @abc.abstractmethod
    def _search(self, ctx: SearchContext) -> SearchOutcome:
        """Run the attack on ``ctx`` (every class of ``ctx.classes`` at once) and return its result.

        Stop with reason ``"time_budget"`` when ``ctx.expired()`` and ``"query_budget"`` when the
        target raises ``QueryBudgetExceededError``, keeping the best so far.
        """


def _array(name: str, what: str, value: object, dtype: type[np.generic]) -> NDArray[Any]:
    """``value`` (numpy array or torch tensor) as a fresh numpy array of ``dtype``."""
    try:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        return np.asarray(value).astype(dtype)
    except (TypeError, ValueError) as exc:
        raise RuntimeError(
            f"attack '{name}' returned {what} that is not a numeric array ({exc}); "
            "this is a bug in the attack"
        ) from None


def _checked_outcome(
    name: str, outcome: object, n: int, input_shape: tuple[int, ...]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], tuple[str, ...]]:
    """The search's outcome as result arrays, after checking one entry per class of each."""
    if not isinstance(outcome, SearchOutcome):
        raise RuntimeError(
            f"attack '{name}' returned {type(outcome).__name__} from _search instead of a "
            "SearchOutcome; this is a bug in the attack"
        )
    recon = _array(name, "reconstructions", outcome.reconstructions, np.float32)
    conf = _array(name, "target_confidence", outcome.target_confidence, np.float32)
    iters = _array(name, "iterations", outcome.iterations, np.int64)
    for what, arr, expected in (
        ("reconstructions", recon, (n, *input_shape)),
        ("target_confidence", conf, (n,)),
        ("iterations", iters, (n,)),
    ):
        if arr.shape != expected:
            raise RuntimeError(
                f"attack '{name}' returned {what} of shape {arr.shape} for {n} classes, "
                f"expected {expected}; this is a bug in the attack"
            )
    reasons = outcome.stop_reasons
    if (
        isinstance(reasons, str)
        or len(reasons) != n
        or not all(isinstance(r, str) for r in reasons)
    ):
        raise RuntimeError(
            f"attack '{name}' returned stop_reasons {_short(reasons)} for {n} classes, "
            f"expected {n} strings; this is a bug in the attack"
        )
    return recon, conf, iters, tuple(reasons)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
