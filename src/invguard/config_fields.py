"""Config fields shared by the assessment and the gateway configs (pydantic, strict): input
normalisation, and the model-source fields both spell the same way (loaded by
:mod:`invguard.models.sources`). Nothing here imports torch.

The models are strict (``ConfigDict(strict=True)``): YAML gives real integers, numbers and booleans,
so ``seeds: [true]`` or ``port: "80"`` is an error, not 1 or 80 (a number field still takes an
integer). Paths and tuples, which YAML spells as strings and lists, are :data:`ConfigPath` and
``Annotated[tuple[...], Strict(False)]`` (their items stay strict)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

ConfigPath = Annotated[Path, Strict(False)]
"""A path field: a string in the file (a strict ``Path`` would take only ``Path`` objects)."""


def _version_not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # True == 1 would pass the literal
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": "1"})
    return value


ConfigVersion = Annotated[Literal[1], BeforeValidator(_version_not_bool)]
"""The ``version`` field: 1 (not ``true``)."""


class NormalizeConfig(BaseModel):
    """The model takes ``(x - mean) / std`` per channel (one value, or one per channel, each);
    InvGuard works in pixel space [0, 1] and normalises before the model."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mean: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(min_length=1)

    def pair(self) -> tuple[list[float], list[float]]:
        return (list(self.mean), list(self.std))


Arch = Literal["softmax", "mlp", "cnn"]
TorchOutput = Literal["logits", "probabilities", "log_probabilities"]
OnnxOutput = Literal["logits", "probabilities"]
FACTORY_FIELD_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"


class SourceModel(BaseModel):
    """A strict, frozen configuration model (unknown fields are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TorchSource(SourceModel):
    """The PyTorch fields both configs share: ``model`` (weights with ``factory``, called with
    ``kwargs``, or with a reference ``arch``; the gateway also takes a ``.pt2`` program here),
    ``model_output`` (``probabilities`` when the model ends in softmax) and ``normalize`` (the
    model takes ``(x - mean) / std``; inputs stay in pixel space [0, 1])."""

    model: ConfigPath | None = None
    arch: Arch | None = None
    factory: str | None = Field(None, pattern=FACTORY_FIELD_PATTERN)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    model_output: TorchOutput = "logits"
    normalize: NormalizeConfig | None = None

    def file_field(self) -> str | None:
        """The field that names the model file (``model``; a subclass may add others), or None
        for a source without a file (a reference model)."""
        return "model" if self.model is not None else None

    def weights_problem(self) -> str | None:
        """What is wrong with ``arch``, ``factory`` and ``kwargs`` (the rules both configs share)."""
        if self.model is None and (self.arch is not None or self.factory is not None):
            return "'arch' and 'factory' apply to 'model' (weights) only"
        if self.arch is not None and self.factory is not None:
            return "give either 'arch' or 'factory', not both"
        if self.kwargs and self.factory is None:
            return "'kwargs' apply to a 'factory' only"
        return None


class SklearnSource(SourceModel):
    """A scikit-learn classifier saved with skops (``.skops``); never unpickled. ``trusted``
    lists the extra types skops may load."""

    type: Literal["sklearn"]
    model: ConfigPath
    trusted: list[str] = Field(default_factory=list)


class OnnxSource(SourceModel):
    """An ONNX classifier run with onnxruntime."""

    type: Literal["onnx"]
    model: ConfigPath
    model_output: OnnxOutput = "logits"


class HttpSource(SourceModel):
    """A JSON prediction endpoint. Header values may name environment variables as ``${NAME}``
    (e.g. an API key), so that no secret needs to be written into the file."""

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    request_template: dict[str, Any] = Field(default_factory=lambda: {"inputs": "$inputs"})
    response: str | None = None
    timeout: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0)
    max_batch: int = Field(64, ge=1)


ModelSource = TorchSource | SklearnSource | OnnxSource | HttpSource
