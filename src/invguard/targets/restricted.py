"""A target that exposes less than the model behind it: top-k, rounded scores or labels only."""

from __future__ import annotations

from invguard.errors import TargetError
from invguard.targets.base import Capability, OutputSpec, Target
from invguard.targets.output import TargetView


class RestrictedTarget(TargetView):
    """Wrap a target that returns full probabilities so that it returns only what ``output`` allows.

    A :class:`~invguard.targets.output.TargetView` of a declared :class:`OutputSpec`. Queries are
    counted (and budgeted) by the inner target. Gradients and logits are never exposed.
    """

    def __init__(self, inner: Target, output: OutputSpec) -> None:
        if Capability.PROBABILITIES not in inner.capabilities:
            raise TargetError("RestrictedTarget needs an inner target that returns probabilities")
        if output.top_k is not None and output.top_k > inner.num_classes:
            raise TargetError(
                f"The 'top_k' parameter must be <= the number of classes ({inner.num_classes}), "
                f"got {output.top_k}"
            )
        super().__init__(inner, output=output)
        self.output = output
