"""Tabular data for attribute inference: the Adult census data, the user's CSV, split and encoding.

**Adult.** The UCI Adult census extract (32,561 rows; Becker and Kohavi 1996, UCI Machine
Learning Repository, https://doi.org/10.24432/C5XW20, CC BY 4.0) ships inside InvGuard as
``tabular/datasets/adult.data.gz``: the repository's ``adult.data`` byte for byte, gzip-compressed
(409 KB for 3.97 MB; its credit and licence in ``tabular/datasets/NOTICE``). Its SHA-256 is checked
when it is read; nothing is downloaded. ``fnlwgt`` (a survey sampling weight, not an attribute of
the person) is dropped; missing values, written ``?`` in the file, stay a category of their own.
The label is ``income`` (``<=50K`` / ``>50K``).

**Tables** are :class:`~invguard.tabular.table.Table` objects (numpy columns: ``float64`` numeric,
strings categorical), read with the standard ``csv`` module: pandas is not needed (``Table``
converts to and from a pandas ``DataFrame`` when pandas is installed).

**Split** (:func:`split_rows`): stratified by label with one explicit
``numpy.random.default_rng(seed)``: for each label in sorted order, its rows are permuted and the
first ``round(0.7 n)`` go to *train* (the target model's training data: the members whose
sensitive values the attacks try to recover); the rest are halved the same way into *auxiliary*
(rows the attacker holds, with their sensitive values) and *evaluation* (non-members, for the
member/non-member contrast).

**Encoding** (:class:`TabularEncoder`, fitted on the training rows only): columns in data order;
a numeric column becomes one value ``(v - min) / (max - min)`` with the training minimum and
maximum, clipped to [0, 1]; a categorical column becomes one-hot columns, one per category seen in
training (sorted as strings; an unseen category encodes as all zeros). Every input therefore lies in
[0, 1], and every candidate value of a categorical sensitive attribute is one known one-hot block,
so an attacker can enumerate them all. Labels become indices into the sorted training labels.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from invguard.errors import DataError, InvalidParameterError, check_float, check_int
from invguard.tabular.table import Table

ADULT_COLUMNS: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
ADULT_NUMERIC: tuple[str, ...] = (
    "age",
    "education-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
)
ADULT_DROPPED: tuple[str, ...] = ("fnlwgt",)
ADULT_LABEL = "income"
ADULT_ROWS = 32_561
ADULT_FILE = "adult.data.gz"
# SHA-256 of the uncompressed file, as the UCI repository serves it (3,974,305 bytes).
ADULT_SHA256 = "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"
MISSING = "?"
ENCODING_FORMAT = "invguard-tabular-encoding"
ENCODING_VERSION = 1


def _join(names: Iterable[str], limit: int = 20) -> str:
    items = list(names)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


@dataclass(frozen=True, eq=False)
class TabularData:
    """A table: feature columns (numeric or categorical strings) and one label column."""

    name: str
    frame: Table
    label: str
    features: tuple[str, ...]
    categorical: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        missing = [c for c in (*self.features, self.label) if c not in self.frame.columns]
        if missing:
            raise DataError(f"{self.name}: columns {_join(missing)} are missing")
        if self.label in self.features:
            raise DataError(f"{self.name}: the label column '{self.label}' is also a feature")

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.features, self.label)

    def labels(self) -> NDArray[np.str_]:
        out: NDArray[np.str_] = np.asarray(self.frame[self.label], dtype=str)
        return out

    def check_sensitive(self, column: str) -> str:
        """Raise :class:`DataError` unless ``column`` is a categorical feature of this table."""
        if column == self.label:
            raise DataError(
                f"sensitive column '{column}' is the label of {self.name}: choose a feature column"
            )
        if column not in self.features:
            raise DataError(
                f"sensitive column '{column}' does not exist in {self.name}; its feature columns "
                f"are: {_join(self.features)}"
            )
        if column not in self.categorical:
            raise DataError(
                f"sensitive column '{column}' of {self.name} is numeric: attribute inference "
                "enumerates the values of a categorical column (declare it categorical)"
            )
        return column


def adult_path() -> Path:
    """The gzip-compressed Adult file inside the installed package."""
    path = Path(__file__).with_name("datasets") / ADULT_FILE
    if not path.is_file():
        raise DataError(f"the Adult data file {path} is missing from the InvGuard package")
    return path


def _read_adult(path: Path) -> bytes:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read the Adult data file {path}: {exc}") from exc
    if hashlib.sha256(raw).hexdigest() != ADULT_SHA256:
        raise DataError(f"the Adult data file {path} is damaged: its SHA-256 does not match")
    return raw


def load_adult() -> TabularData:
    """The Adult census data (32,561 rows, 13 features, label ``income``), as documented above."""
    path = adult_path()
    text = io.StringIO(_read_adult(path).decode("ascii"))
    rows = [r for r in csv.reader(text, skipinitialspace=True) if r]
    if len(rows) != ADULT_ROWS or any(len(r) != len(ADULT_COLUMNS) for r in rows):
        raise DataError(f"{path} has {len(rows)} rows, expected {ADULT_ROWS}")
    cells = dict(zip(ADULT_COLUMNS, zip(*rows, strict=True), strict=True))
    columns: dict[str, Any] = {}
    for col in ADULT_COLUMNS:
        if col in ADULT_DROPPED:
            continue
        values = cells[col]
        if col in ADULT_NUMERIC:
            columns[col] = np.asarray(values, dtype=np.float64)
        elif col == ADULT_LABEL:
            columns[col] = np.asarray([v.rstrip(".") for v in values], dtype=str)
        else:
            columns[col] = np.asarray(values, dtype=str)
    features = tuple(c for c in ADULT_COLUMNS if c not in ADULT_DROPPED and c != ADULT_LABEL)
    categorical = frozenset(c for c in features if c not in ADULT_NUMERIC)
    return TabularData("adult", Table(columns), ADULT_LABEL, features, categorical)


def _read_csv_rows(src: Path) -> list[list[str]]:
    """Every non-blank record of ``src`` (the header first), leading spaces of cells skipped."""
    try:
        with src.open(newline="", encoding="utf-8") as fh:
            return [r for r in csv.reader(fh, skipinitialspace=True) if r]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV file {src}: {exc}") from exc
    except csv.Error as exc:
        raise DataError(f"cannot parse CSV file {src}: {exc}") from exc


def _check_header(
    src: Path, where: str, header: list[str], label: str, categorical: Sequence[str]
) -> None:
    """Raise :class:`DataError` for a header without ``label``, or with bad or unknown names."""
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"CSV file {src} has duplicate columns: {_join(dupes)}")
    if "" in header:
        raise DataError(f"CSV file {src} has a column without a name (column {header.index('')})")
    if label not in header:
        raise DataError(
            f"label column '{label}' does not exist in {where}; its columns are: {_join(header)}"
        )
    unknown = [c for c in categorical if c not in header]
    if unknown:
        raise DataError(
            f"categorical column '{unknown[0]}' does not exist in {where}; its columns are: "
            f"{_join(header)}"
        )


def _number(cell: str) -> float | None:
    """``cell`` as a finite or infinite float; None for text, ``nan`` and digit separators."""
    if "_" in cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _numeric_column(
    col: str, where: str, values: list[str]
) -> NDArray[np.float64] | NDArray[np.str_]:
    """A numeric column as float64 when every non-empty cell is a number, else categorical."""
    parsed = [_number(v) if v else math.nan for v in values]
    if any(p is None for p in parsed):
        return np.asarray([v or MISSING for v in values], dtype=str)
    empty = [i for i, v in enumerate(values) if not v]
    if empty:
        raise DataError(
            f"numeric column '{col}' of {where} has {len(empty)} empty cells (first in data "
            f"row {empty[0] + 1}): fill them, or declare the column categorical"
        )
    return np.asarray(parsed, dtype=np.float64)


def load_csv(
    path: str | os.PathLike[str],
    *,
    label: str,
    categorical: Sequence[str] = (),
    name: str | None = None,
) -> TabularData:
    """Read the user's CSV (a header row, then one record per row) with ``label`` as the label.

    A column is numeric when every cell parses as a number, categorical otherwise or when named in
    ``categorical``. Empty cells are the category ``?`` in categorical columns and an error in
    numeric ones. Every problem is a one-line :class:`DataError` that names the column.
    """
    src = Path(path)
    if not src.is_file():
        raise DataError(f"CSV file {src} does not exist")
    records = _read_csv_rows(src)
    if not records:
        raise DataError(f"CSV file {src} is empty: a header row is expected")
    header = [h.strip() for h in records[0]]
    where = name or src.name
    _check_header(src, where, header, label, categorical)
    rows = records[1:]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise DataError(
                f"cannot parse CSV file {src}: data row {i + 1} has {len(r)} fields, the header "
                f"has {len(header)}"
            )
    if len(rows) < 10:
        raise DataError(f"{where} has {len(rows)} rows: at least 10 are needed")
    features = tuple(c for c in header if c != label)
    if not features:
        raise DataError(f"{where} has no feature columns besides the label '{label}'")
    cells = {
        h: [v.strip() for v in column]
        for h, column in zip(header, zip(*rows, strict=True), strict=True)
    }
    columns: dict[str, Any] = {}
    for col in features:
        if col in categorical:
            columns[col] = np.asarray([v or MISSING for v in cells[col]], dtype=str)
        else:
            columns[col] = _numeric_column(col, where, cells[col])
    labels = cells[label]
    if "" in labels:
        raise DataError(
            f"label column '{label}' of {where} has empty cells (first in row "
            f"{labels.index('') + 1})"
        )
    if len(set(labels)) < 2:
        raise DataError(f"label column '{label}' of {where} has a single value: nothing to learn")
    columns[label] = np.asarray(labels, dtype=str)
    table = Table({h: columns[h] for h in header})
    cats = frozenset(c for c in features if columns[c].dtype.kind == "U")
    return TabularData(where, table, label, features, cats)


def _as_float(values: NDArray[Any]) -> NDArray[np.float64]:
    """A column as float64: numbers as they are, text cells that are not numbers as NaN."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    parsed = [_number(str(v).strip()) for v in values.tolist()]
    return np.asarray([math.nan if p is None else p for p in parsed], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class RowSplit:
    """Row indices (sorted) of the three parts of a table; see :func:`split_rows`."""

    train: NDArray[np.int64]
    auxiliary: NDArray[np.int64]
    evaluation: NDArray[np.int64]
    seed: int

    def summary(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "auxiliary": len(self.auxiliary),
            "evaluation": len(self.evaluation),
            "seed": self.seed,
        }


def split_rows(
    labels: Sequence[Any] | NDArray[Any],
    *,
    seed: int = 0,
    train_fraction: float = 0.7,
    auxiliary_fraction: float = 0.5,
) -> RowSplit:
    """Seeded stratified split: train / auxiliary / evaluation (see the module docstring)."""
    check_int("seed", seed, minimum=0)
    check_float("train_fraction", train_fraction, minimum=0.0, maximum=1.0, min_inclusive=False)
    check_float("auxiliary_fraction", auxiliary_fraction, minimum=0.0, maximum=1.0)
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) == 0:
        raise InvalidParameterError(
            f"The 'labels' parameter must be a non-empty 1-d array, got shape {lab.shape}"
        )
    rng = np.random.default_rng(seed)
    train: list[NDArray[np.int64]] = []
    aux: list[NDArray[np.int64]] = []
    evaluation: list[NDArray[np.int64]] = []
    for value in np.unique(lab):  # sorted
        rows = rng.permutation(np.flatnonzero(lab == value)).astype(np.int64)
        n_train = round(train_fraction * len(rows))
        rest = rows[n_train:]
        n_aux = round(auxiliary_fraction * len(rest))
        train.append(rows[:n_train])
        aux.append(rest[:n_aux])
        evaluation.append(rest[n_aux:])
    return RowSplit(
        train=np.sort(np.concatenate(train)),
        auxiliary=np.sort(np.concatenate(aux)),
        evaluation=np.sort(np.concatenate(evaluation)),
        seed=seed,
    )


@dataclass(frozen=True, eq=False)
class SensitiveAttribute:
    """The attribute under attack: its columns ``[start, stop)`` in the encoded vector, its
    candidate values and the encoding of each candidate (``(k, stop - start)``)."""

    name: str
    start: int
    stop: int
    values: tuple[str, ...]
    encodings: NDArray[np.float32]

    def __post_init__(self) -> None:
        enc = np.asarray(self.encodings, dtype=np.float32)
        if not 0 <= self.start < self.stop:
            raise InvalidParameterError(
                f"sensitive attribute '{self.name}': columns [{self.start}, {self.stop}) are empty"
            )
        if len(self.values) < 2:
            raise InvalidParameterError(
                f"sensitive attribute '{self.name}' needs at least 2 candidate values, "
                f"got {len(self.values)}"
            )
        if enc.shape != (len(self.values), self.stop - self.start):
            raise InvalidParameterError(
                f"sensitive attribute '{self.name}': encodings must have shape "
                f"({len(self.values)}, {self.stop - self.start}), got {enc.shape}"
            )
        object.__setattr__(self, "encodings", enc)

    @property
    def k(self) -> int:
        return len(self.values)

    @property
    def columns(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class FeatureBlock:
    """One source column in the encoded vector: ``[start, stop)``, and how it is encoded."""

    name: str
    kind: Literal["numeric", "categorical"]
    start: int
    stop: int
    categories: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0

    @property
    def width(self) -> int:
        return self.stop - self.start


class TabularEncoder:
    """The documented encoding (module docstring): fitted on training rows, saved as JSON."""

    def __init__(
        self, blocks: Sequence[FeatureBlock], *, label: str, classes: Sequence[str]
    ) -> None:
        self.blocks: tuple[FeatureBlock, ...] = tuple(blocks)
        self.label = label
        self.classes: tuple[str, ...] = tuple(classes)
        if not self.blocks:
            raise InvalidParameterError("an encoding needs at least one feature column")
        if len(self.classes) < 2:
            raise InvalidParameterError(
                f"an encoding needs at least 2 label classes, got {self.classes!r}"
            )
        pos = 0
        for b in self.blocks:
            if b.start != pos or b.stop <= b.start:
                raise InvalidParameterError(f"encoding block '{b.name}' is not contiguous")
            if b.kind == "categorical" and len(b.categories) != b.width:
                raise InvalidParameterError(
                    f"encoding block '{b.name}' has {len(b.categories)} categories for "
                    f"{b.width} columns"
                )
            pos = b.stop
        self._by_name = {b.name: b for b in self.blocks}
        self._class_index = {c: i for i, c in enumerate(self.classes)}

    # --- fitting and persistence ------------------------------------------------------------

    @classmethod
    def fit(cls, data: TabularData, rows: NDArray[np.int64] | None = None) -> TabularEncoder:
        """Fit on ``rows`` of ``data`` (all rows when None)."""
        frame = data.frame if rows is None else data.frame.take(rows)
        if len(frame) == 0:
            raise DataError(f"{data.name}: no rows to fit the encoding on")
        blocks: list[FeatureBlock] = []
        pos = 0
        for col in data.features:
            if col in data.categorical:
                cats = tuple(sorted(set(frame[col].astype(str).tolist())))
                blocks.append(FeatureBlock(col, "categorical", pos, pos + len(cats), cats))
                pos += len(cats)
            else:
                values = frame[col].astype(np.float64)
                blocks.append(
                    FeatureBlock(
                        col,
                        "numeric",
                        pos,
                        pos + 1,
                        low=float(values.min()),
                        high=float(values.max()),
                    )
                )
                pos += 1
        classes = tuple(sorted(set(frame[data.label].astype(str).tolist())))
        if len(classes) < 2:
            raise DataError(f"{data.name}: the training rows have a single label value")
        return cls(blocks, label=data.label, classes=classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENCODING_FORMAT,
            "version": ENCODING_VERSION,
            "label": self.label,
            "classes": list(self.classes),
            "columns": [
                {"name": b.name, "kind": b.kind, "categories": list(b.categories)}
                if b.kind == "categorical"
                else {"name": b.name, "kind": b.kind, "low": b.low, "high": b.high}
                for b in self.blocks
            ],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, source: str = "encoding") -> TabularEncoder:
        if not isinstance(doc, Mapping) or doc.get("format") != ENCODING_FORMAT:
            raise DataError(f"{source} is not an InvGuard tabular encoding")
        if doc.get("version") != ENCODING_VERSION:
            raise DataError(
                f"{source} has encoding version {doc.get('version')!r}, "
                f"this InvGuard reads {ENCODING_VERSION}"
            )
        try:
            blocks: list[FeatureBlock] = []
            pos = 0
            for col in doc["columns"]:
                if col["kind"] == "categorical":
                    cats = tuple(str(c) for c in col["categories"])
                    blocks.append(
                        FeatureBlock(str(col["name"]), "categorical", pos, pos + len(cats), cats)
                    )
                    pos += len(cats)
                elif col["kind"] == "numeric":
                    blocks.append(
                        FeatureBlock(
                            str(col["name"]),
                            "numeric",
                            pos,
                            pos + 1,
                            low=float(col["low"]),
                            high=float(col["high"]),
                        )
                    )
                    pos += 1
                else:
                    raise DataError(f"{source}: unknown column kind {col['kind']!r}")
            return cls(blocks, label=str(doc["label"]), classes=[str(c) for c in doc["classes"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source} is malformed: {type(exc).__name__} {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TabularEncoder:
        src = Path(path)
        try:
            doc = json.loads(src.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read encoding file {src}: {exc}") from exc
        return cls.from_dict(doc, source=f"encoding file {src}")

    # --- the encoding ---------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return self.blocks[-1].stop

    @property
    def columns(self) -> tuple[str, ...]:
        """The source columns, in order."""
        return tuple(b.name for b in self.blocks)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """One name per encoded column: ``age``, ``sex=Male``, ..."""
        names: list[str] = []
        for b in self.blocks:
            names.extend(
                [b.name] if b.kind == "numeric" else [f"{b.name}={c}" for c in b.categories]
            )
        return tuple(names)

    @property
    def groups(self) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` of each source column's encoded columns."""
        return tuple((b.start, b.stop) for b in self.blocks)

    def block(self, name: str) -> FeatureBlock:
        if name not in self._by_name:
            raise DataError(
                f"column '{name}' is not in the encoding; its columns are: {_join(self.columns)}"
            )
        return self._by_name[name]

    def check_columns(self, data: TabularData, *, model: str = "the model") -> None:
        """Raise :class:`DataError` unless ``data`` has exactly the encoding's feature columns."""
        missing = [c for c in self.columns if c not in data.features]
        extra = [c for c in data.features if c not in self.columns]
        if data.label != self.label:
            raise DataError(
                f"{data.name} has label column '{data.label}', but {model} was trained "
                f"with label '{self.label}'"
            )
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {_join(missing)}")
            if extra:
                parts.append(f"has {_join(extra)}, which {model} was not trained on")
            raise DataError(
                f"{data.name} does not have the columns {model} expects: it " + "; it ".join(parts)
            )
        for b in self.blocks:
            is_cat = b.name in data.categorical
            if is_cat != (b.kind == "categorical"):
                kind = "categorical" if is_cat else "numeric"
                raise DataError(
                    f"column '{b.name}' of {data.name} is {kind}, but {model} encodes it as "
                    f"{b.kind}"
                )

    def encode(self, frame: Table) -> NDArray[np.float32]:
        """Encode the feature columns of ``frame``: ``(n, n_features)`` float32 in [0, 1]."""
        out = np.zeros((len(frame), self.n_features), dtype=np.float32)
        for b in self.blocks:
            if b.name not in frame.columns:
                raise DataError(f"column '{b.name}' is missing from the data to encode")
            if b.kind == "numeric":
                v = _as_float(frame[b.name])
                if not np.isfinite(v).all():
                    raise DataError(f"numeric column '{b.name}' has non-numeric or missing values")
                span = b.high - b.low
                scaled = (v - b.low) / span if span > 0 else np.zeros_like(v)
                out[:, b.start] = np.clip(scaled, 0.0, 1.0)
            else:
                codes = self._codes(frame[b.name], b)
                known = codes >= 0
                out[np.flatnonzero(known), b.start + codes[known]] = 1.0
        return out

    @staticmethod
    def _codes(values: NDArray[Any], block: FeatureBlock) -> NDArray[np.int64]:
        lookup = {c: i for i, c in enumerate(block.categories)}
        return np.fromiter(
            (lookup.get(v, -1) for v in values.astype(str).tolist()),
            dtype=np.int64,
            count=len(values),
        )

    def encode_labels(self, frame: Table) -> NDArray[np.int64]:
        """Label indices into :attr:`classes`; a label not seen in training is an error."""
        if self.label not in frame.columns:
            raise DataError(f"label column '{self.label}' is missing from the data")
        labels = frame[self.label].astype(str).tolist()
        unknown = sorted({v for v in labels if v not in self._class_index})
        if unknown:
            raise DataError(
                f"label column '{self.label}' has values the model was not trained on: "
                f"{_join(repr(u) for u in unknown)}"
            )
        return np.fromiter(
            (self._class_index[v] for v in labels), dtype=np.int64, count=len(labels)
        )

    def attribute(self, name: str) -> SensitiveAttribute:
        """The sensitive attribute ``name`` (a categorical column): its columns and candidates."""
        b = self.block(name)
        if b.kind != "categorical":
            raise DataError(
                f"sensitive column '{name}' is numeric: attribute inference enumerates the "
                "values of a categorical column"
            )
        if b.width < 2:
            raise DataError(f"sensitive column '{name}' has a single value in the training rows")
        return SensitiveAttribute(
            name, b.start, b.stop, b.categories, np.eye(b.width, dtype=np.float32)
        )

    def sensitive_codes(self, frame: Table, name: str) -> NDArray[np.int64]:
        """Index of each row's value of ``name`` among the candidates; -1 when unseen."""
        return self._codes(frame[name], self.block(name))
