"""Model inversion attacks. Each is a frozen keyword-only config with ``run(target, request, *, rng)``.

All share :class:`AttackBase`, whose final ``run`` does the bookkeeping (capabilities, seeds,
classes, budgets, timing, query counts, the result); an attack implements ``_search``.

* :class:`MIFace`: white-box (gradients).
* :class:`MIFaceZO`: black-box scores, zeroth-order gradient estimates, counted in queries.
* :class:`LearnedInversion`: an inversion network trained on auxiliary images' prediction vectors.
* :class:`BoundaryRepulsion`: labels only, boundary repulsion in a latent space of auxiliary faces.
"""

from invguard.attacks.base import (
    Attack,
    AttackBase,
    AttackResult,
    InversionRequest,
    ProgressFn,
    SearchContext,
    SearchOutcome,
)
from invguard.attacks.blackbox import MIFaceZO
from invguard.attacks.label_only import BoundaryRepulsion
from invguard.attacks.learned import LearnedInversion
from invguard.attacks.miface import MIFace

ATTACKS: dict[str, type[MIFace | MIFaceZO | LearnedInversion | BoundaryRepulsion]] = {
    MIFace.name: MIFace,
    MIFaceZO.name: MIFaceZO,
    LearnedInversion.name: LearnedInversion,
    BoundaryRepulsion.name: BoundaryRepulsion,
}

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackBase",
    "AttackResult",
    "BoundaryRepulsion",
    "InversionRequest",
    "LearnedInversion",
    "MIFace",
    "MIFaceZO",
    "ProgressFn",
    "SearchContext",
    "SearchOutcome",
]
