"""Model inversion attacks. Each is a frozen keyword-only config with ``run(target, request, *, rng)``."""

from invguard.attacks.base import Attack, AttackResult, InversionRequest, ProgressFn
from invguard.attacks.miface import MIFace

ATTACKS: dict[str, type[MIFace]] = {"miface": MIFace}

__all__ = ["ATTACKS", "Attack", "AttackResult", "InversionRequest", "MIFace", "ProgressFn"]
