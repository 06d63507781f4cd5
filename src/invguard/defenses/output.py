"""Output policies as pure, batched functions over probability arrays.

They live in :mod:`invguard.targets.output` (the targets layer, below the defences); this module
keeps their names for the output defences, the HTTP model server and the gateway.
"""

from invguard.targets.output import (
    FloatArray,
    apply_output_spec,
    gaussian_noise,
    label_only,
    restore_labels,
    reverse_sigmoid,
    round_scores,
    top_k,
)

__all__ = [
    "FloatArray",
    "apply_output_spec",
    "gaussian_noise",
    "label_only",
    "restore_labels",
    "reverse_sigmoid",
    "round_scores",
    "top_k",
]
