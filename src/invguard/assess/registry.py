"""Kept for one release: the attack catalogue moved to :mod:`invguard.catalog.attacks`."""

from invguard.catalog.attacks import (
    ATTACK_REGISTRY,
    AUTO,
    AUTO_WHITE_BOX_RULE,
    AttackInfo,
    auto_white_box,
    build_attack,
    select_attacks,
)

__all__ = [
    "ATTACK_REGISTRY",
    "AUTO",
    "AUTO_WHITE_BOX_RULE",
    "AttackInfo",
    "auto_white_box",
    "build_attack",
    "select_attacks",
]
