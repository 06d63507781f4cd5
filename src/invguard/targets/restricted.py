"""A target that exposes less than the model behind it: top-k, rounded scores or labels only."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from invguard.errors import TargetError
from invguard.targets.base import Capability, OutputSpec, Target


class RestrictedTarget:
    """Wrap a target that returns full probabilities so that it returns only what ``output`` allows.

    Queries are counted (and budgeted) by the inner target. Gradients and logits are never exposed.
    """

    def __init__(self, inner: Target, output: OutputSpec) -> None:
        if Capability.PROBABILITIES not in inner.capabilities:
            raise TargetError("RestrictedTarget needs an inner target that returns probabilities")
        if output.top_k is not None and output.top_k > inner.num_classes:
            raise TargetError(
                f"The 'top_k' parameter must be <= the number of classes ({inner.num_classes}), "
                f"got {output.top_k}"
            )
        self.inner = inner
        self.output = output

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.output.capabilities()

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inner.input_shape

    @property
    def queries(self) -> int:
        return self.inner.queries

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        # imported here: invguard.defenses imports the target contract, not the other way round
        from invguard.defenses.output import apply_output_spec

        return apply_output_spec(self.inner.predict(x), self.output)
