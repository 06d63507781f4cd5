"""Config fields shared by the assessment and the gateway configs (pydantic, strict)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class NormalizeConfig(BaseModel):
    """The model takes ``(x - mean) / std`` per channel (one value, or one per channel, each);
    InvGuard works in pixel space [0, 1] and normalises before the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(min_length=1)

    def pair(self) -> tuple[list[float], list[float]]:
        return (list(self.mean), list(self.std))
