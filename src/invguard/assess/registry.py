"""The attacks an assessment can run, by name, and how a config entry becomes an attack object."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invguard.attacks.miface import MIFace
from invguard.errors import InvalidParameterError

if TYPE_CHECKING:
    from invguard.assess.config import Budget
    from invguard.attacks.base import Attack


@dataclass(frozen=True)
class AttackInfo:
    """How the assessment treats an attack: its access level, rule and budget mapping."""

    name: str
    cls: type[Any]
    access: str  # "white-box", "black-box scores", "learned", "label-only"
    rule_id: str
    title: str
    iterations_field: str | None = None
    needs_auxiliary: bool = False


ATTACK_REGISTRY: dict[str, AttackInfo] = {
    "miface": AttackInfo(
        name="miface",
        cls=MIFace,
        access="white-box",
        rule_id="IG-MI-001",
        title="Training identities reconstructed by white-box model inversion (MI-FACE)",
        iterations_field="max_iterations",
    ),
}


def build_attack(name: str, params: dict[str, Any], budget: Budget | None = None) -> Attack:
    """The attack object for a config entry; ``ValueError`` (one line) on any invalid parameter."""
    info = ATTACK_REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(info.cls) if f.init}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for attack {name!r} "
            f"(expected one of: {', '.join(sorted(fields))})"
        )
    kwargs = dict(params)
    if budget is not None and budget.iterations is not None:
        if info.iterations_field is None:
            raise ValueError(f"attack {name!r} has no iteration budget; use queries or seconds")
        kwargs[info.iterations_field] = budget.iterations
    if "bounds" in kwargs and isinstance(kwargs["bounds"], list):
        kwargs["bounds"] = tuple(kwargs["bounds"])
    try:
        attack: Attack = info.cls(**kwargs)
    except InvalidParameterError as exc:
        raise ValueError(str(exc)) from exc
    return attack
