"""An attribute inference scenario: a table, its split and encoding, the attribute, the requests.

The target model is trained on the *train* rows; attacked are those rows (members: the records the
model was trained on) or, for contrast, the *evaluation* rows (non-members); the attacker holds
the *auxiliary* rows in full. Rows whose sensitive value was never seen in training are left out
(the encoding has no candidate for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from invguard.errors import DataError, check_choice, check_int
from invguard.tabular.attacks import AttributeInferenceRequest, AuxiliaryRows
from invguard.tabular.data import (
    RowSplit,
    SensitiveAttribute,
    TabularData,
    TabularEncoder,
    split_rows,
)

Population = Literal["members", "non-members"]
POPULATIONS: tuple[str, ...] = ("members", "non-members")


@dataclass(frozen=True, eq=False)
class TabularScenario:
    """Everything an assessment needs, encoded once."""

    data: TabularData
    encoder: TabularEncoder
    split: RowSplit
    attribute: SensitiveAttribute
    x: NDArray[np.float32]
    y: NDArray[np.int64]
    s: NDArray[np.int64]

    @property
    def train_x(self) -> NDArray[np.float32]:
        return self.x[self.split.train]

    @property
    def train_y(self) -> NDArray[np.int64]:
        return self.y[self.split.train]

    @property
    def num_classes(self) -> int:
        return len(self.encoder.classes)

    def auxiliary(self) -> AuxiliaryRows:
        rows = self.split.auxiliary[self.s[self.split.auxiliary] >= 0]
        if len(rows) == 0:
            raise DataError(f"{self.data.name}: no auxiliary rows")
        return AuxiliaryRows(x=self.x[rows], y=self.y[rows], s=self.s[rows])

    def rows(
        self, population: Population = "members", *, max_rows: int | None = None, seed: int = 0
    ) -> NDArray[np.int64]:
        """The attacked rows: all of the population, or a seeded sample of ``max_rows``."""
        check_choice("population", population, POPULATIONS)
        pool = self.split.train if population == "members" else self.split.evaluation
        pool = pool[self.s[pool] >= 0]
        if max_rows is not None:
            check_int("max_rows", max_rows, minimum=1)
            if max_rows < len(pool):
                rng = np.random.default_rng(seed)
                pool = np.sort(rng.choice(pool, size=max_rows, replace=False))
        return pool

    def request(
        self,
        population: Population = "members",
        *,
        max_rows: int | None = None,
        seed: int = 0,
        with_auxiliary: bool = True,
    ) -> tuple[AttributeInferenceRequest, NDArray[np.int64]]:
        """The request for the attacked rows, and their true sensitive value indices."""
        rows = self.rows(population, max_rows=max_rows, seed=seed)
        request = AttributeInferenceRequest(
            attribute=self.attribute,
            x=self.x[rows],
            y=self.y[rows],
            auxiliary=self.auxiliary() if with_auxiliary else None,
            feature_groups=self.encoder.groups,
        )
        return request, self.s[rows]


def build_scenario(
    data: TabularData,
    sensitive: str,
    *,
    seed: int = 0,
    encoder: TabularEncoder | None = None,
    model_name: str = "the model",
) -> TabularScenario:
    """Split ``data`` (seeded), encode it (fitting the encoding on the train rows unless given)."""
    data.check_sensitive(sensitive)
    split = split_rows(data.labels(), seed=seed)
    if encoder is None:
        encoder = TabularEncoder.fit(data, split.train)
    else:
        encoder.check_columns(data, model=model_name)
    attribute = encoder.attribute(sensitive)
    return TabularScenario(
        data=data,
        encoder=encoder,
        split=split,
        attribute=attribute,
        x=encoder.encode(data.frame),
        y=encoder.encode_labels(data.frame),
        s=encoder.sensitive_codes(data.frame, sensitive),
    )


def shuffle_sensitive(
    x: NDArray[np.float32], attribute: SensitiveAttribute, rng: np.random.Generator
) -> NDArray[np.float32]:
    """A copy of ``x`` whose sensitive columns are permuted across rows.

    A model trained on it sees the attribute's values with their marginal intact but cut off from
    the label and from every other feature: it has nothing to leak (the negative control).
    """
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, attribute.columns] = out[rng.permutation(len(out))][:, attribute.columns]
    return out
