"""The attack catalogue: every attack by name, with its access level, rule and budget mapping, and
how a config entry becomes an attack object. A new attack is one file in ``invguard.attacks`` and
one entry here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from invguard.attacks.blackbox import MIFaceZO
from invguard.attacks.generative import GMI, IFGMI, PLGMI, PPA, PPDG
from invguard.attacks.label_only import BoundaryRepulsion
from invguard.attacks.learned import LearnedInversion
from invguard.attacks.miface import MIFace
from invguard.attacks.priors_setup import choose_attack, prior_source
from invguard.errors import InvalidParameterError
from invguard.priors import PUBLIC_FACE_INSTALL

if TYPE_CHECKING:
    from torch import nn

    from invguard.attacks.base import Attack


class IterationBudget(Protocol):
    """The part of a budget the catalogue maps onto an attack (``assess.config.Budget``)."""

    @property
    def iterations(self) -> int | None: ...


AUTO = "auto"


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
    needs_prior: bool = False  # a generative-prior attack: the job prepares its image prior


ATTACK_REGISTRY: dict[str, AttackInfo] = {
    "miface": AttackInfo(
        name="miface",
        cls=MIFace,
        access="white-box",
        rule_id="IG-MI-001",
        title="Training identities reconstructed by white-box model inversion (MI-FACE)",
        iterations_field="max_iterations",
    ),
    "ppa": AttackInfo(
        name="ppa",
        cls=PPA,
        access="white-box",
        rule_id="IG-MI-005",
        title="Training identities reconstructed in a public image generator's latent space "
        "(PPA, Struppek et al. 2022)",
        iterations_field="steps",
        needs_prior=True,
    ),
    "ifgmi": AttackInfo(
        name="ifgmi",
        cls=IFGMI,
        access="white-box",
        rule_id="IG-MI-008",
        title="Training identities reconstructed in a public image generator's latent space and "
        "intermediate features (IF-GMI, Qiu et al. 2024)",
        iterations_field="steps",
        needs_prior=True,
    ),
    "ppdg": AttackInfo(
        name="ppdg",
        cls=PPDG,
        access="white-box",
        rule_id="IG-MI-009",
        title="Training identities reconstructed by a public image generator tuned on the attack's "
        "own reconstructions (PPDG-MI, Peng et al. 2024)",
        iterations_field="steps",
        needs_prior=True,
    ),
    "gmi": AttackInfo(
        name="gmi",
        cls=GMI,
        access="white-box",
        rule_id="IG-MI-006",
        title="Training identities reconstructed by generative model inversion with a GAN trained "
        "on public images (GMI, Zhang et al. 2020)",
        iterations_field="steps",
        needs_prior=True,
    ),
    "plg": AttackInfo(
        name="plg",
        cls=PLGMI,
        access="white-box",
        rule_id="IG-MI-007",
        title="Training identities reconstructed by a conditional GAN trained with the target's "
        "pseudo-labels (PLG-MI, Yuan et al. 2023)",
        iterations_field="steps",
        needs_auxiliary=True,
        needs_prior=True,
    ),
    "miface-zo": AttackInfo(
        name="miface-zo",
        cls=MIFaceZO,
        access="black-box scores",
        rule_id="IG-MI-002",
        title="Training identities reconstructed through the prediction API's scores (black-box "
        "MI-FACE)",
        iterations_field="max_iterations",
    ),
    "learned": AttackInfo(
        name="learned",
        cls=LearnedInversion,
        access="learned",
        rule_id="IG-MI-003",
        title="Training identities reconstructed by a learned inversion network (Yang et al. 2019)",
        needs_auxiliary=True,
    ),
    "brep": AttackInfo(
        name="brep",
        cls=BoundaryRepulsion,
        access="label-only",
        rule_id="IG-MI-004",
        title="Training identities reconstructed from predicted labels only (boundary repulsion)",
        iterations_field="max_iterations",
        needs_auxiliary=True,
    ),
}


@dataclass(frozen=True)
class TabularAttackInfo:
    """An attack on a tabular system: one job runs the baselines and every attribute-inference
    attack the model allows (:func:`invguard.tabular.report.default_attacks`)."""

    name: str
    access: str
    rule_id: str
    title: str


TABULAR_ATTACKS: dict[str, TabularAttackInfo] = {
    "attribute": TabularAttackInfo(
        name="attribute",
        access="black-box scores",
        rule_id="IG-AI-001",
        title="A sensitive attribute of training records inferred from the model beyond what the "
        "other columns reveal (attribute inference, Fredrikson et al. 2014; Mehnaz et al. 2022)",
    ),
}


def build_attack(
    name: str, params: dict[str, Any], budget: IterationBudget | None = None
) -> Attack:
    """The attack object for a config entry; ``ValueError`` (one line) on any invalid parameter.

    An iteration budget sets the attack's iterations field; for IF-GMI it also caps the steps of
    each feature stage, so that no stage runs longer than the budget."""
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
        if "feature_steps" in fields and kwargs.get("feature_layers", info.cls.feature_layers):
            default = kwargs.get("feature_steps", info.cls.feature_steps)
            kwargs["feature_steps"] = min(default, budget.iterations)
    for key in ("bounds", "feature_layers"):  # YAML and JSON give lists
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    try:
        attack: Attack = info.cls(**kwargs)
    except InvalidParameterError as exc:
        raise ValueError(str(exc)) from exc
    return attack


AUTO_WHITE_BOX_RULE = (
    "auto runs one white-box attack: ifgmi for models with convolutions, miface otherwise "
    "(list this attack by name to run it as well)"
)


def auto_white_box(
    model: nn.Module | None, *, faces: bool, has_auxiliary: bool
) -> tuple[str, dict[str, str]]:
    """The white-box attack ``auto`` runs, and why each other white-box attack is not run.

    The rule of ``invguard attack --attack auto`` (:func:`~invguard.attacks.priors_setup.choose_attack`):
    IF-GMI for models with convolutions, MI-FACE otherwise; IF-GMI only where it can get an image prior
    (the public face generator for face data, else one trained on the auxiliary images), MI-FACE
    where it cannot.
    """
    choice = choose_attack(AUTO, model)
    reasons: dict[str, str] = {}
    if (
        choice != "miface"
        and prior_source(AUTO, attack=choice, faces=faces, has_public=has_auxiliary) is None
    ):
        install = f"install the public face generator ({PUBLIC_FACE_INSTALL}) or " if faces else ""
        reasons[choice] = (
            f"needs an image prior: {install}set the system's 'auxiliary' (public images to "
            "train one); auto runs miface instead"
        )
        choice = "miface"
    for name, info in ATTACK_REGISTRY.items():
        if info.access == "white-box" and name != choice:
            reasons.setdefault(name, AUTO_WHITE_BOX_RULE)
    return choice, reasons


def select_attacks(
    capabilities: frozenset[Any],
    has_auxiliary: bool,
    *,
    model: nn.Module | None = None,
    faces: bool = False,
) -> tuple[list[str], list[dict[str, str]]]:
    """Capability-driven choice: every registered attack the target's access allows (strongest
    access first, as registered) with one white-box attack (:func:`auto_white_box`: IF-GMI for a
    convolutional ``model``, MI-FACE otherwise), and those skipped with the reason."""
    chosen: list[str] = []
    skipped: list[dict[str, str]] = []
    offered = ", ".join(sorted(str(c) for c in capabilities)) or "nothing"
    white, not_white = auto_white_box(model, faces=faces, has_auxiliary=has_auxiliary)
    for name, info in ATTACK_REGISTRY.items():
        needs = frozenset(info.cls.requires)
        missing = needs - capabilities
        if missing:
            skipped.append(
                {
                    "attack": name,
                    "reason": f"needs {', '.join(sorted(str(m) for m in missing))}; "
                    f"the target offers {offered}",
                }
            )
        elif info.access == "white-box" and name != white:
            skipped.append({"attack": name, "reason": not_white[name]})
        elif info.needs_auxiliary and not has_auxiliary:
            skipped.append(
                {
                    "attack": name,
                    "reason": "needs auxiliary (public) images: set the system's 'auxiliary'",
                }
            )
        else:
            chosen.append(name)
    return chosen, skipped
