"""The assessment configuration (``invguard.yaml``), validated with pydantic.

Errors name the file, the field path and what was expected, on one line, e.g.
``invguard.yaml: systems[0].attacks[0].name: unknown attack 'mifase' (expected one of: miface)``.
Relative paths in the file are resolved against the file's folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from invguard.catalog.attacks import ATTACK_REGISTRY, AUTO, TABULAR_ATTACKS, build_attack
from invguard.catalog.defenses import build_output_defense, build_training_defense
from invguard.config_errors import ConfigError as ConfigError  # the one configuration error
from invguard.config_errors import friendly_error, is_validator_tag
from invguard.config_fields import (
    ConfigPath,
    ConfigVersion,
    HttpSource,
    OnnxSource,
    SklearnSource,
    TorchSource,
)
from invguard.config_yaml import error_prefix, load_yaml_config

CONFIG_VERSION = 1
SEVERITIES = ("critical", "high", "medium", "low", "info")
FAIL_ON_CHOICES = (*SEVERITIES, "none")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ------------------------------------------------------------------------------------------------
# targets


class ReferenceModel(_Model):
    """An InvGuard reference model trained on the system's data (for demos and baselines)."""

    arch: Literal["softmax", "mlp", "cnn"]
    seed: int = Field(0, ge=0)


class PytorchTarget(TorchSource):
    """The user's PyTorch model, attacked white-box (with gradients). One source:

    * ``program``: a ``torch.export`` program (``.pt2`` from ``torch.export.save``);
    * ``model``: weights (``.safetensors`` or a state dict) with ``factory`` (``pkg.module:function``
      of the user's own code, imported and called with ``kwargs``; the configuration's folder is on
      the import path) or with ``arch`` (an InvGuard reference architecture);
    * ``reference``: an InvGuard reference model trained on the system's data.

    ``model_output`` says what the model returns (``probabilities`` when it ends in softmax).
    ``normalize: {mean: [...], std: [...]}`` when the model takes ``(x - mean) / std``.
    """

    type: Literal["pytorch"] = "pytorch"
    program: ConfigPath | None = None
    reference: ReferenceModel | None = None

    def file_field(self) -> str | None:
        return "program" if self.program is not None else super().file_field()

    @model_validator(mode="after")
    def _one_source(self) -> PytorchTarget:
        sources = [s for s in (self.program, self.model, self.reference) if s is not None]
        if len(sources) != 1:
            raise ValueError(
                "set exactly one of 'program' (a torch.export .pt2), 'model' (weights, with "
                "'factory' or 'arch') or 'reference'"
            )
        if self.model is not None and (self.arch is None) == (self.factory is None):
            raise ValueError("'model' (weights) needs exactly one of 'factory' or 'arch'")
        problem = self.weights_problem()
        if problem is not None:
            raise ValueError(problem)
        return self


class OutputConfig(_Model):
    """What a deployment returns: scores (all, or the top k, optionally rounded) or labels only."""

    scores: bool = True
    top_k: int | None = Field(None, ge=1)
    decimals: int | None = Field(None, ge=0)

    def spec(self) -> Any:
        from invguard.targets.base import OutputSpec

        return OutputSpec(scores=self.scores, top_k=self.top_k, decimals=self.decimals)


class SklearnTarget(SklearnSource):
    """A scikit-learn classifier saved with skops (``.skops``); never unpickled."""

    output: OutputConfig = OutputConfig()


class OnnxTarget(OnnxSource):
    """An ONNX classifier run with onnxruntime."""

    output: OutputConfig = OutputConfig()


class HttpTarget(HttpSource):
    """A live JSON prediction endpoint. Header values may name environment variables as
    ``${NAME}`` (e.g. an API key), so no secret needs to be written into the file."""

    type: Literal["http"]
    output: OutputConfig = OutputConfig()
    concurrency: int = Field(1, ge=1, le=64)
    probe: bool = True
    probe_burst: int = Field(40, ge=1, le=1000)


class TabularReferenceTarget(_Model):
    """A tabular system's reference model, trained by InvGuard on the table's documented training
    split (``logreg``, ``tree``, ``forest``, ``gbdt`` or ``mlp``; see ``invguard.tabular.models``)."""

    type: Literal["reference"]
    arch: Literal["logreg", "tree", "forest", "gbdt", "mlp"]


TargetConfig = Annotated[
    PytorchTarget | SklearnTarget | OnnxTarget | HttpTarget | TabularReferenceTarget,
    Field(discriminator="type"),
]


# ------------------------------------------------------------------------------------------------
# data


class BuiltinData(_Model):
    """A built-in data set: 'att-faces' (46x56), 'att-faces-full' (92x112), 'att-faces-private30'
    (identities s1-s30) or 'digits'."""

    builtin: Literal["att-faces", "att-faces-full", "att-faces-private30", "digits"]


class FolderData(_Model):
    """The user's own images: one sub-folder per class under ``train`` and ``test`` folders
    (``folder/train/<class>/*.png``, ``folder/test/<class>/*.png``), read as grey-scale."""

    folder: ConfigPath
    image_size: Annotated[tuple[int, int], Strict(False)] | None = None  # (width, height)


class NpzData(_Model):
    """An ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (images in [0, 1],
    shape (n, channels, height, width) or (n, height, width)) and optional ``class_names``."""

    npz: ConfigPath


class TabularTable(_Model):
    """A table whose ``sensitive`` column an attacker infers from the model (attribute inference):
    the built-in ``adult`` census data, or the user's ``csv`` with its ``label`` column. The model
    was trained on the documented training split (``seed``); ``rows`` training records are
    attacked, and with ``non_members`` as many held-out ones, for contrast."""

    dataset: Literal["adult"] | None = None
    csv: ConfigPath | None = None
    label: str | None = Field(None, min_length=1)
    categorical: list[str] = Field(default_factory=list)
    sensitive: str = Field(min_length=1)
    encoding: ConfigPath | None = None
    rows: int = Field(5000, ge=1)
    non_members: bool = False
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> TabularTable:
        if self.csv is not None and self.dataset is not None:
            raise ValueError("give 'dataset' or 'csv', not both")
        if self.csv is not None and self.label is None:
            raise ValueError("'csv' needs 'label': the name of the label column")
        if self.csv is None and (self.label is not None or self.categorical):
            raise ValueError("'label' and 'categorical' apply to 'csv' only")
        return self


class TabularData(_Model):
    """Tabular data: ``{tabular: {dataset: adult, sensitive: marital-status}}``."""

    tabular: TabularTable


_DATA_KEYS: dict[type[BaseModel], str] = {
    BuiltinData: "builtin",
    FolderData: "folder",
    NpzData: "npz",
    TabularData: "tabular",
}


def _data_kind(value: Any) -> str | None:
    """Which data form an entry is, by its key (so errors speak of that form only)."""
    if isinstance(value, dict):
        return next((k for k in _DATA_KEYS.values() if k in value), None)
    return _DATA_KEYS.get(type(value))


_DATA_ERROR = "expected one of the keys: builtin, folder, npz, tabular"

ImageDataConfig = Annotated[
    Annotated[BuiltinData, Tag("builtin")]
    | Annotated[FolderData, Tag("folder")]
    | Annotated[NpzData, Tag("npz")],
    Discriminator(
        _data_kind,
        custom_error_type="data_kind",
        custom_error_message="expected one of the keys: builtin, folder, npz",
    ),
]
DataConfig = Annotated[
    Annotated[BuiltinData, Tag("builtin")]
    | Annotated[FolderData, Tag("folder")]
    | Annotated[NpzData, Tag("npz")]
    | Annotated[TabularData, Tag("tabular")],
    Discriminator(_data_kind, custom_error_type="data_kind", custom_error_message=_DATA_ERROR),
]


class BuiltinAuxiliary(_Model):
    """Built-in public images: 'att-faces-public10' (identities s31-s40)."""

    builtin: Literal["att-faces-public10"]


class FolderAuxiliary(_Model):
    """Every image under a folder (recursively), read as grey-scale at the private data's size."""

    folder: ConfigPath


class NpzAuxiliary(_Model):
    """An ``.npz`` whose array ``x`` holds the images, in [0, 1]."""

    npz: ConfigPath


AuxiliaryConfig = BuiltinAuxiliary | FolderAuxiliary | NpzAuxiliary


# ------------------------------------------------------------------------------------------------
# attacks


class Budget(_Model):
    """Limits of one attack job: iterations (for iterative attacks), queries and seconds."""

    iterations: int | None = Field(None, ge=1)
    queries: int | None = Field(None, ge=1)
    seconds: float | None = Field(None, gt=0)


def _field_error(
    title: str, loc: tuple[str | int, ...], message: str, value: Any
) -> ValidationError:
    """A validation error at ``loc`` below the model being validated (for cross-field checks whose
    message should name the field at fault, not the model)."""
    return ValidationError.from_exception_data(
        title,
        [InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)],
    )


class AttackConfig(_Model):
    """One attack of a system. ``prior`` (the generative-prior attacks ppa and gmi only) is the
    image generator their latent search uses, as ``invguard attack --prior``: ``auto`` (the
    default: the public face generator for face data, else a DCGAN trained on the system's
    ``auxiliary`` images), ``public-faces``, ``trained``, or a generator file (relative to the
    configuration file). PLG-MI always trains its own conditional GAN on the auxiliary images."""

    name: str
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    budget: Budget = Budget()
    params: dict[str, Any] = Field(default_factory=dict)
    classes: list[Annotated[int, Field(ge=0)]] | None = None
    prior: str | None = Field(None, min_length=1)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v != AUTO and v not in ATTACK_REGISTRY and v not in TABULAR_ATTACKS:
            raise ValueError(
                f"unknown attack {v!r} (expected one of: "
                f"{', '.join([AUTO, *sorted([*ATTACK_REGISTRY, *TABULAR_ATTACKS])])})"
            )
        return v

    @field_validator("prior")
    @classmethod
    def _prior_applies(cls, v: str | None, info: ValidationInfo) -> str | None:
        name = info.data.get("name")
        if v is None or name is None:
            return v
        entry = ATTACK_REGISTRY.get(name)
        if entry is None or not entry.needs_prior:
            raise ValueError(
                f"attack {name!r} takes no prior: 'prior' applies to the generative-prior "
                "attacks ifgmi, ppdg, ppa and gmi"
            )
        if name == "plg":
            raise ValueError(
                "attack 'plg' takes no prior: it trains its own conditional GAN on the system's "
                "'auxiliary' images, pseudo-labelled by the target"
            )
        return v

    @model_validator(mode="after")
    def _params_valid(self) -> AttackConfig:
        if self.name == AUTO or self.name in TABULAR_ATTACKS:
            if self.params:
                raise ValueError(
                    f"attack {self.name!r} takes no params (it uses each attack's defaults)"
                )
            return self
        build_attack(self.name, self.params, self.budget)  # raises ValueError with the reason
        return self


# ------------------------------------------------------------------------------------------------
# defences to evaluate


class TrainingDefenseConfig(_Model):
    """A training-time defence: the model is retrained with it (see ``invguard.defenses.training``)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> TrainingDefenseConfig:
        build_training_defense(self.name, self.params)  # raises ValueError with the reason
        return self


class OutputDefenseConfig(_Model):
    """An output defence wrapped around the target; ``compose`` chains ``steps`` in order."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    steps: list[OutputDefenseConfig] | None = None

    @model_validator(mode="after")
    def _valid(self) -> OutputDefenseConfig:
        build_output_defense(self.name, self.params, self.steps)  # raises ValueError
        return self


class DefensesConfig(_Model):
    """Defences to measure on the system: each one's test accuracy against its attacks' leakage."""

    max_accuracy_drop: float = Field(0.03, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)
    queries: int | None = Field(None, ge=1)  # hard query budget of each black-box attack run
    training: list[TrainingDefenseConfig] = Field(default_factory=list)
    output: list[OutputDefenseConfig] = Field(default_factory=list)
    public_data: ImageDataConfig | None = None

    @model_validator(mode="after")
    def _something(self) -> DefensesConfig:
        if not self.training and not self.output:
            raise ValueError("list at least one defence under 'training' or 'output'")
        return self


# ------------------------------------------------------------------------------------------------
# controls, thresholds, systems


CONTROL_IDS = ("output_minimisation", "query_limits", "inference_monitoring", "dp_training")


class DeclaredControl(_Model):
    """A control that cannot be measured from outside, declared by a named person."""

    id: Literal["output_minimisation", "query_limits", "inference_monitoring", "dp_training"]
    status: Literal["present", "missing", "not_applicable"]
    declared_by: str = Field(min_length=1)
    note: str = ""


class SystemConfig(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = ""
    owner: str = ""
    target: TargetConfig
    data: DataConfig
    auxiliary: AuxiliaryConfig | None = None
    attacks: list[AttackConfig] = Field(min_length=1)
    controls: list[DeclaredControl] = Field(default_factory=list)
    defenses: DefensesConfig | None = None

    @model_validator(mode="after")
    def _unique_controls(self) -> SystemConfig:
        ids = [c.id for c in self.controls]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"control {sorted(dup)[0]!r} is declared twice")
        return self

    @model_validator(mode="after")
    def _fits_data(self) -> SystemConfig:
        """Tabular systems take tabular attacks and models; image systems the others."""
        tabular = isinstance(self.data, TabularData)
        if isinstance(self.target, TabularReferenceTarget) and not tabular:
            raise _field_error(
                "SystemConfig",
                ("target", "type"),
                "target type 'reference' is a tabular reference model: for images use type "
                "'pytorch' with 'reference: {arch: ...}'",
                "reference",
            )
        if tabular and isinstance(self.target, PytorchTarget):
            raise _field_error(
                "SystemConfig",
                ("target", "type"),
                "a tabular system's target is 'reference', 'sklearn', 'onnx' or 'http'",
                "pytorch",
            )
        for j, atk in enumerate(self.attacks):
            if atk.name != AUTO and (atk.name in TABULAR_ATTACKS) != tabular:
                kind = "tabular" if tabular else "image"
                fits = sorted(TABULAR_ATTACKS) if tabular else sorted(ATTACK_REGISTRY)
                raise _field_error(
                    "SystemConfig",
                    ("attacks", j, "name"),
                    f"attack {atk.name!r} does not apply to {kind} data (expected auto or one of: "
                    f"{', '.join(fits)})",
                    atk.name,
                )
        for name in ("auxiliary", "defenses"):
            if tabular and getattr(self, name) is not None:
                raise _field_error(
                    "SystemConfig",
                    (name,),
                    f"'{name}' applies to image systems only (a tabular system's attacker holds "
                    "the table's auxiliary rows)",
                    name,
                )
        return self

    @model_validator(mode="after")
    def _plg_has_auxiliary(self) -> SystemConfig:
        if self.auxiliary is not None:
            return self
        for j, atk in enumerate(self.attacks):
            if atk.name == "plg":
                raise _field_error(
                    "SystemConfig",
                    ("attacks", j, "name"),
                    "attack 'plg' needs auxiliary (public) images to train its conditional GAN "
                    "on, pseudo-labelled by the target: set the system's 'auxiliary'",
                    atk.name,
                )
        return self


class AssessmentConfig(_Model):
    version: ConfigVersion = 1
    name: str = "InvGuard assessment"
    fail_on: Literal["critical", "high", "medium", "low", "info", "none"] = "high"
    output_dir: ConfigPath = Path("invguard-assessment")
    history_db: ConfigPath = Path("invguard-history.db")
    audit_db: ConfigPath | None = Path("invguard-audit.db")
    cache_dir: ConfigPath | None = None
    systems: list[SystemConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_systems(self) -> AssessmentConfig:
        ids = [s.id for s in self.systems]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"system id {sorted(dup)[0]!r} is used twice")
        return self


# ------------------------------------------------------------------------------------------------
# loading


class LoadedConfig:
    """A validated configuration with its file path (relative paths resolve against its folder)."""

    def __init__(self, config: AssessmentConfig, path: Path, raw: dict[str, Any]) -> None:
        self.config = config
        self.path = path
        self.base = path.parent
        self.raw = raw

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base / p)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the validated configuration."""
        blob = json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


# pydantic adds the tag of the union member to the location; strip those for readability
_UNION_TAGS = {
    "BuiltinAuxiliary",
    "FolderAuxiliary",
    "NpzAuxiliary",
    "BuiltinData",
    "FolderData",
    "NpzData",
    "pytorch",
}


def _is_union_tag(part: int | str) -> bool:
    return part in _UNION_TAGS or is_validator_tag(part)


def _friendly(err: Any, raw: Any) -> str:
    return friendly_error(err, raw, AssessmentConfig, is_union_tag=_is_union_tag)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate ``path``; raise :class:`ConfigError` with a one-line message
    (``invguard.yaml:12: systems[0].attacks[0].seeds[0]: ...``)."""
    p = Path(path)
    doc = load_yaml_config(
        p, not_found="configuration file not found (create one with 'invguard init')"
    )
    raw = doc.data
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        config = AssessmentConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # an unknown field (a typo) explains the "missing" errors that follow from it: say it first
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        more = len(errors) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        where = error_prefix(p, doc, tuple(x for x in first["loc"] if not _is_union_tag(x)))
        raise ConfigError(f"{where}{_friendly(first, raw)}{tail}") from exc
    return LoadedConfig(config, p, raw)
