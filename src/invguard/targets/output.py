"""What a target returns: output restrictions as pure batched functions, as ordered steps, and as
a view of any target.

* The functions (:func:`top_k`, :func:`round_scores`, :func:`label_only`, :func:`gaussian_noise`,
  :func:`reverse_sigmoid`, :func:`apply_output_spec`) map ``(n, classes)`` probability arrays.
* The steps (:class:`RoundScores`, :class:`TopK`, :class:`LabelOnly`, :class:`GaussianNoise`,
  :class:`ReverseSigmoid`, :class:`Compose`) are frozen keyword-only configs of those functions;
  they are the output defences (``step.wrap(target)``) and the gateway's output steps.
* :class:`OutputPolicy` is the one description of a restriction: its steps in order (none: full
  probabilities). :meth:`OutputPolicy.of` turns an :class:`~invguard.targets.base.OutputSpec` (what
  a deployment declares: top-k, rounding, labels only), one step or ``None`` into a policy.
* :class:`TargetView` wraps any target with an optional policy and an optional query budget of its
  own; :func:`target_view` also delegates gradients when the inner target has them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, TargetError, check_float, check_int
from invguard.targets.base import (
    Capability,
    DifferentiableTarget,
    GradientTarget,
    OutputSpec,
    QueryCounter,
    Target,
    check_batch,
)

FloatArray = NDArray[np.float32]
Transform = Callable[[FloatArray], FloatArray]


def _check(probs: np.ndarray) -> NDArray[np.float32]:
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 2:
        raise InvalidParameterError(f"scores must have shape (n, classes), got {p.shape}")
    return p


def top_k(probs: np.ndarray, k: int) -> FloatArray:
    """Keep each row's ``k`` highest scores, set the others to 0 (ties broken by lower index)."""
    p = _check(probs)
    if k < 1:
        raise InvalidParameterError(f"The 'k' parameter must be an int >= 1, got {k}")
    if k >= p.shape[1]:
        return p.copy()
    # stable argsort on -p keeps the lowest index first among ties
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(p)
    rows = np.arange(len(p))[:, None]
    out[rows, order] = p[rows, order]
    return out


def restore_labels(original: np.ndarray, perturbed: np.ndarray) -> FloatArray:
    """Where ``perturbed`` changed a row's arg-max, swap the two scores back into place.

    The row stays a permutation of the perturbed scores (same sum, same set of values) and its
    arg-max is the original label again; where the perturbation left a tie at the top, the label's
    score is raised by one float32 step so that it wins the tie.
    """
    out = np.array(perturbed, dtype=np.float32, copy=True)
    want = original.argmax(axis=1)
    got = out.argmax(axis=1)
    rows = np.flatnonzero(want != got)
    if rows.size:
        a, b = want[rows], got[rows]
        out[rows, a], out[rows, b] = out[rows, b], out[rows, a].copy()
        # a perturbation can also flatten the top into a tie: lift the label by the smallest step
        tied = rows[out[rows].argmax(axis=1) != want[rows]]
        if tied.size:
            top = out[tied].max(axis=1)
            out[tied, want[tied]] = np.nextafter(top, np.float32(np.inf))
    return out


def round_scores(probs: np.ndarray, decimals: int) -> FloatArray:
    """Round every score to ``decimals`` decimals (Fredrikson et al. 2015's countermeasure).

    Rounding can tie the top score with another; where that would change the arg-max, the true
    top-1 gets one more step of ``10**-decimals``, so the label is always kept.
    """
    p = _check(probs)
    if decimals < 0:
        raise InvalidParameterError(f"The 'decimals' parameter must be an int >= 0, got {decimals}")
    out: FloatArray = np.round(p, decimals).astype(np.float32)
    want = p.argmax(axis=1)
    rows = np.flatnonzero(out.argmax(axis=1) != want)
    if rows.size:
        out[rows, want[rows]] = out[rows].max(axis=1) + np.float32(10.0**-decimals)
    return out


def gaussian_noise(probs: np.ndarray, sigma: float, rng: np.random.Generator) -> FloatArray:
    """Add N(0, sigma^2) noise to the scores, clip to [0, 1], renormalise, keep the labels."""
    p = _check(probs)
    if not sigma > 0:
        raise InvalidParameterError(f"The 'sigma' parameter must be a float > 0, got {sigma}")
    noisy = np.clip(p + rng.normal(0.0, sigma, size=p.shape).astype(np.float32), 1e-6, 1.0)
    noisy /= noisy.sum(axis=1, keepdims=True)
    return restore_labels(p, noisy)


def reverse_sigmoid(probs: np.ndarray, beta: float, gamma: float) -> FloatArray:
    """The reverse sigmoid perturbation of Lee, Edwards, Molloy and Srivastava (IEEE S&P
    Workshops 2019): ``y' = alpha * (y - beta * (sigmoid(gamma * logit(y)) - 1/2))``, with
    ``alpha`` renormalising each row; labels are kept (see :func:`restore_labels`)."""
    p = _check(probs)
    if not beta > 0:
        raise InvalidParameterError(f"The 'beta' parameter must be a float > 0, got {beta}")
    if not gamma > 0:
        raise InvalidParameterError(f"The 'gamma' parameter must be a float > 0, got {gamma}")
    y = np.clip(p.astype(np.float64), 1e-9, 1.0 - 1e-9)
    r = beta * (1.0 / (1.0 + np.exp(-gamma * np.log(y / (1.0 - y)))) - 0.5)
    perturbed = np.clip(y - r, 0.0, 1.0)
    sums = perturbed.sum(axis=1, keepdims=True)
    perturbed = np.where(sums > 0, perturbed / np.where(sums > 0, sums, 1.0), 1.0 / p.shape[1])
    return restore_labels(p, perturbed.astype(np.float32))


def label_only(probs: np.ndarray) -> FloatArray:
    """One-hot rows at each row's arg-max: the label and nothing else."""
    p = _check(probs)
    out = np.zeros_like(p)
    out[np.arange(len(p)), p.argmax(axis=1)] = 1.0
    return out


def apply_output_spec(probs: np.ndarray, spec: OutputSpec) -> FloatArray:
    """What a target that declares ``spec`` returns for true probabilities ``probs``."""
    if not spec.scores:
        return label_only(probs)
    out = _check(probs)
    if spec.top_k is not None:
        out = top_k(out, spec.top_k)
    if spec.decimals is not None:
        out = round_scores(out, spec.decimals)
    return out


# --- steps ----------------------------------------------------------------------------------


@runtime_checkable
class OutputStep(Protocol):
    """One output restriction: ``transform(num_classes)`` gives the batched function."""

    name: ClassVar[str]

    @property
    def labels_only(self) -> bool:
        """Whether the step leaves the label and nothing else."""
        ...

    def transform(self, num_classes: int) -> Transform: ...

    def describe(self) -> str: ...


class _Step(ABC):
    """What every step shares: not label-only, and ``wrap`` as a :class:`TargetView`."""

    name: ClassVar[str]

    @property
    def labels_only(self) -> bool:
        return False

    @abstractmethod
    def transform(self, num_classes: int) -> Transform: ...

    @abstractmethod
    def describe(self) -> str: ...

    def wrap(self, target: Target) -> TargetView:
        """``target`` whose scores pass through this step; queries count on ``target``."""
        return TargetView(target, output=self)


@dataclass(frozen=True, kw_only=True)
class RoundScores(_Step):
    """Round scores to ``decimals`` decimals (Fredrikson et al. 2015)."""

    name: ClassVar[str] = "round"
    decimals: int

    def __post_init__(self) -> None:
        check_int("decimals", self.decimals, minimum=0)

    def transform(self, num_classes: int) -> Transform:
        return lambda p: round_scores(p, self.decimals)

    def describe(self) -> str:
        return f"scores rounded to {self.decimals} decimals"


@dataclass(frozen=True, kw_only=True)
class TopK(_Step):
    """Return only the ``k`` highest scores (the rest are 0)."""

    name: ClassVar[str] = "top_k"
    k: int

    def __post_init__(self) -> None:
        check_int("k", self.k, minimum=1)

    def transform(self, num_classes: int) -> Transform:
        if self.k > num_classes:
            raise InvalidParameterError(
                f"The 'k' parameter must be <= the number of classes ({num_classes}), got {self.k}"
            )
        return lambda p: top_k(p, self.k)

    def describe(self) -> str:
        return f"top-{self.k} scores"


@dataclass(frozen=True, kw_only=True)
class LabelOnly(_Step):
    """Return the label only (one-hot rows)."""

    name: ClassVar[str] = "label_only"

    @property
    def labels_only(self) -> bool:
        return True

    def transform(self, num_classes: int) -> Transform:
        return label_only

    def describe(self) -> str:
        return "labels only"


@dataclass(frozen=True, kw_only=True)
class GaussianNoise(_Step):
    """Add N(0, sigma^2) noise to the scores (renormalised, labels kept); seeded per transform."""

    name: ClassVar[str] = "noise"
    sigma: float
    seed: int = 0

    def __post_init__(self) -> None:
        check_float("sigma", self.sigma, minimum=0.0, min_inclusive=False)
        check_int("seed", self.seed, minimum=0)

    def transform(self, num_classes: int) -> Transform:
        rng = np.random.default_rng(self.seed)
        return lambda p: gaussian_noise(p, self.sigma, rng)

    def describe(self) -> str:
        return f"Gaussian noise (sigma {self.sigma}) on the scores"


@dataclass(frozen=True, kw_only=True)
class ReverseSigmoid(_Step):
    """The reverse sigmoid perturbation (Lee et al. 2019), labels kept."""

    name: ClassVar[str] = "reverse_sigmoid"
    beta: float = 1.0
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_float("beta", self.beta, minimum=0.0, min_inclusive=False)
        check_float("gamma", self.gamma, minimum=0.0, min_inclusive=False)

    def transform(self, num_classes: int) -> Transform:
        return lambda p: reverse_sigmoid(p, self.beta, self.gamma)

    def describe(self) -> str:
        return f"reverse sigmoid (beta {self.beta}, gamma {self.gamma})"


def _chain(steps: Sequence[OutputStep], num_classes: int) -> Transform:
    """One transform running every step's in order (each built once: seeded noise advances)."""
    built = [s.transform(num_classes) for s in steps]

    def run(p: FloatArray) -> FloatArray:
        for step in built:
            p = step(p)
        return p

    return run


@dataclass(frozen=True)
class Compose(_Step):
    """Apply steps in order, e.g. ``Compose([TopK(k=3), RoundScores(decimals=2)])``."""

    name: ClassVar[str] = "compose"
    defenses: Sequence[OutputStep] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.defenses:
            raise InvalidParameterError("The 'defenses' parameter must list at least one defence")

    @property
    def labels_only(self) -> bool:
        return any(d.labels_only for d in self.defenses)

    def transform(self, num_classes: int) -> Transform:
        return _chain(self.defenses, num_classes)

    def describe(self) -> str:
        return ", then ".join(d.describe() for d in self.defenses)


OUTPUT_STEPS: dict[str, type[_Step]] = {
    "round": RoundScores,
    "top_k": TopK,
    "label_only": LabelOnly,
    "noise": GaussianNoise,
    "reverse_sigmoid": ReverseSigmoid,
}


# --- the policy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputPolicy:
    """An output restriction: ``steps`` applied in order to a target's probabilities.

    No steps: full probabilities. A policy with a label-only step exposes labels only; any other
    non-empty policy exposes scores (never the exact probabilities, never gradients or logits).
    """

    steps: tuple[OutputStep, ...] = ()

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        for i, step in enumerate(steps):
            if not isinstance(step, OutputStep):
                raise InvalidParameterError(
                    f"The 'steps' parameter must hold output steps, got {type(step).__name__} "
                    f"at position {i}"
                )
        object.__setattr__(self, "steps", steps)

    @classmethod
    def of(cls, output: OutputPolicy | OutputSpec | OutputStep | None) -> OutputPolicy:
        """The policy of a declared :class:`OutputSpec`, of one step, or ``None`` (full)."""
        if output is None:
            return cls()
        if isinstance(output, OutputPolicy):
            return output
        if isinstance(output, OutputSpec):
            return cls(_spec_steps(output))
        return cls((output,))

    @property
    def full(self) -> bool:
        """Exact, complete probability vectors: nothing is restricted."""
        return not self.steps

    @property
    def labels_only(self) -> bool:
        return any(s.labels_only for s in self.steps)

    @property
    def name(self) -> str:
        """The one step's name, ``compose`` for several, ``full`` for none."""
        if len(self.steps) == 1:
            return self.steps[0].name
        return "compose" if self.steps else "full"

    def capabilities(self) -> frozenset[Capability]:
        if self.full:
            return frozenset({Capability.PROBABILITIES, Capability.SCORES, Capability.LABELS})
        if self.labels_only:
            return frozenset({Capability.LABELS})
        return frozenset({Capability.SCORES, Capability.LABELS})

    def describe(self) -> str:
        return ", then ".join(s.describe() for s in self.steps) or "full probabilities"

    def transform(self, num_classes: int) -> Transform:
        """The whole policy as one batched function for ``num_classes`` classes."""
        return _chain(self.steps, num_classes)


def _spec_steps(spec: OutputSpec) -> tuple[OutputStep, ...]:
    if not spec.scores:
        return (LabelOnly(),)
    steps: list[OutputStep] = []
    if spec.top_k is not None:
        steps.append(TopK(k=spec.top_k))
    if spec.decimals is not None:
        steps.append(RoundScores(decimals=spec.decimals))
    return tuple(steps)


# --- views ----------------------------------------------------------------------------------

_WHITE_BOX = frozenset({Capability.GRADIENTS, Capability.LOGITS})


class TargetView:
    """A view of ``inner``: its answers through ``output``, its queries under a budget of its own.

    ``output`` (an :class:`OutputPolicy`, an :class:`OutputSpec` or one step) restricts the scores;
    a restricting view needs an inner target that returns scores. Queries count on the inner
    target; with ``query_budget`` (or ``own_count=True``) the view also counts them itself and
    refuses a batch past its budget before the inner target sees it (one budget per attack run,
    however many share the model). A ``TargetView`` never exposes gradients or logits: use
    :func:`target_view` with ``gradients=True`` for an unrestricted white-box view.
    """

    def __init__(
        self,
        inner: Target,
        *,
        output: OutputPolicy | OutputSpec | OutputStep | None = None,
        query_budget: int | None = None,
        own_count: bool = False,
    ) -> None:
        self.inner = inner
        self.policy = OutputPolicy.of(output)
        if not self.policy.full and not (
            {Capability.PROBABILITIES, Capability.SCORES} & inner.capabilities
        ):
            raise TargetError(
                f"defence '{self.policy.name}' needs a target that returns scores; this one offers "
                f"{', '.join(sorted(inner.capabilities))}"
            )
        own = own_count or query_budget is not None
        self._counter = QueryCounter(query_budget) if own else None
        self._transform = None if self.policy.full else self.policy.transform(inner.num_classes)

    @property
    def capabilities(self) -> frozenset[Capability]:
        if self.policy.full:
            return self.inner.capabilities - _WHITE_BOX
        return self.policy.capabilities()

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inner.input_shape

    @property
    def queries(self) -> int:
        """The view's own count when it keeps one, else the inner target's."""
        return self.inner.queries if self._counter is None else self._counter.count

    @property
    def counter(self) -> QueryCounter | None:
        """The view's own query counter, or None when queries count on the inner target only."""
        return self._counter

    def _charge(self, n: int) -> None:
        if self._counter is not None:
            self._counter.charge(n)

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The inner target's scores through the policy; counts ``n`` queries."""
        if self._counter is not None:
            x = check_batch(x, self.inner.input_shape)
            self._counter.charge(len(x))
        scores = np.asarray(self.inner.predict(x), dtype=np.float32)
        return scores if self._transform is None else self._transform(scores)


class GradientView(TargetView):
    """An unrestricted view of a :class:`GradientTarget` that delegates ``class_gradient``."""

    inner: GradientTarget

    def __init__(
        self, inner: GradientTarget, *, query_budget: int | None = None, own_count: bool = False
    ) -> None:
        super().__init__(inner, query_budget=query_budget, own_count=own_count)

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.inner.capabilities

    @property
    def device(self) -> Any:
        return self.inner.device

    def class_gradient(
        self,
        x: Any,
        classes: Any,
        *,
        quantity: Literal["probability", "log_probability", "logit"] = "log_probability",
    ) -> tuple[Any, Any]:
        """The inner target's ``(logits, gradient)``; counts ``len(x)`` queries."""
        self._charge(int(x.shape[0]))
        return self.inner.class_gradient(x, classes, quantity=quantity)


class DifferentiableView(GradientView):
    """A :class:`GradientView` of a :class:`DifferentiableTarget` (``differentiable_logits`` too)."""

    inner: DifferentiableTarget

    def differentiable_logits(self, x: Any) -> Any:
        """The inner target's logits with the graph kept; counts ``len(x)`` queries."""
        self._charge(int(x.shape[0]))
        return self.inner.differentiable_logits(x)


def target_view(
    inner: Target,
    *,
    output: OutputPolicy | OutputSpec | OutputStep | None = None,
    query_budget: int | None = None,
    own_count: bool = False,
    gradients: bool = False,
) -> TargetView:
    """A view of ``inner`` (see :class:`TargetView`) that also delegates gradients when
    ``gradients`` is set, the output is unrestricted and the inner target has them."""
    policy = OutputPolicy.of(output)
    if gradients and not policy.full:
        raise InvalidParameterError(
            "The 'gradients' parameter must be False for a view that restricts the output "
            f"({policy.describe()}): a restricted view never exposes gradients"
        )
    if gradients and isinstance(inner, DifferentiableTarget):
        return DifferentiableView(inner, query_budget=query_budget, own_count=own_count)
    if gradients and isinstance(inner, GradientTarget):
        return GradientView(inner, query_budget=query_budget, own_count=own_count)
    return TargetView(inner, output=policy, query_budget=query_budget, own_count=own_count)
