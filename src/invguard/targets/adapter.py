"""The shared half of every target adapter: the contract's properties and one ``predict``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import final

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError
from invguard.targets.base import (
    FULL_PROBABILITIES,
    Capability,
    OutputSpec,
    QueryCounter,
    check_batch,
)
from invguard.targets.output import apply_output_spec


class BaseTarget(ABC):
    """A :class:`~invguard.targets.Target` adapter: an adapter writes :meth:`_scores` only.

    :meth:`predict` does the same for every adapter: it checks the batch against
    :attr:`input_shape`, charges one query per input on :attr:`counter` (refusing a batch past the
    budget before anything runs), asks :meth:`_scores` for the model's probabilities and returns
    them through the declared :attr:`output` spec as float32. Capabilities are the output spec's
    plus what :meth:`_own_capabilities` adds (gradients, logits). An adapter calls
    ``super().__init__`` with its input shape and budget, and :meth:`_declare` once it knows its
    class count.
    """

    output: OutputSpec = FULL_PROBABILITIES
    _num_classes: int

    def __init__(self, *, input_shape: tuple[int, ...], query_budget: int | None = None) -> None:
        self._input_shape = tuple(int(s) for s in input_shape)
        self._counter = QueryCounter(query_budget)

    def _declare(self, num_classes: int, output: OutputSpec = FULL_PROBABILITIES) -> None:
        """Set the class count and the output spec, whose ``top_k`` must fit the classes."""
        if output.top_k is not None and output.top_k > num_classes:
            raise InvalidParameterError(
                f"The 'top_k' parameter must be <= the number of classes ({num_classes}), "
                f"got {output.top_k}"
            )
        self._num_classes = num_classes
        self.output = output

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.output.capabilities() | self._own_capabilities()

    def _own_capabilities(self) -> frozenset[Capability]:
        """What the adapter offers beyond its scores (gradients, logits); nothing by default."""
        return frozenset()

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    @property
    def queries(self) -> int:
        return self._counter.count

    @property
    def counter(self) -> QueryCounter:
        return self._counter

    @final
    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Scores of shape ``(n, num_classes)`` as the output spec allows; counts ``n`` queries."""
        arr = check_batch(x, self._input_shape)
        self._charge(len(arr))
        return self._restrict(self._scores(arr))

    def _charge(self, n: int) -> None:
        """Charge ``n`` queries; raises before anything is computed when over the budget."""
        self._counter.charge(n)

    @abstractmethod
    def _scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The model's probabilities ``(n, num_classes)`` for a checked, charged batch."""

    def _restrict(self, scores: NDArray[np.float32]) -> NDArray[np.float32]:
        """``scores`` as the declared output spec allows them, as float32."""
        return apply_output_spec(scores, self.output)
