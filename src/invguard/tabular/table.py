"""A small column table: named 1-d numpy columns of one length, in order (no pandas needed).

Numeric columns are ``float64``; categorical ones are numpy strings. A :class:`Table` is immutable;
``table["age"]``, ``"age" in table``, ``table.columns`` and ``len(table)`` (the number of rows)
read as they would on a data frame. :meth:`Table.to_pandas` and :meth:`Table.from_pandas` convert
to and from a pandas ``DataFrame`` when pandas is installed (``pip install 'invguard[tabular]'``).
"""

from __future__ import annotations

import csv
import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.errors import DataError

PANDAS_HINT = "pip install 'invguard[tabular]'"


def _column(name: str, values: Any) -> NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"column '{name}' must be 1-d, got shape {arr.shape}")
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    return arr.astype(str)


class Table:
    """Columns by name (see the module docstring); ``len(table)`` is the number of rows."""

    def __init__(self, columns: Mapping[str, Any]) -> None:
        cols = {str(k): _column(str(k), v) for k, v in columns.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in cols.items())
            raise DataError(f"table columns must have one length, got {sizes}")
        self._cols = cols
        self._n = lengths.pop() if lengths else 0

    def __getitem__(self, name: str) -> NDArray[Any]:
        if name not in self._cols:
            raise KeyError(name)
        return self._cols[name]

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"Table({self._n} rows: {', '.join(self._cols)})"

    @property
    def n_rows(self) -> int:
        return self._n

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._cols)

    def to_dict(self) -> dict[str, NDArray[Any]]:
        """The columns by name (the arrays themselves, not copies)."""
        return dict(self._cols)

    def take(self, rows: Sequence[int] | NDArray[np.integer[Any]] | slice) -> Table:
        """The given rows (indices or a slice), every column."""
        index = rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        return Table({k: v[index] for k, v in self._cols.items()})

    def head(self, n: int) -> Table:
        return self.take(slice(0, n))

    def drop(self, names: Sequence[str]) -> Table:
        missing = [c for c in names if c not in self._cols]
        if missing:
            raise DataError(f"cannot drop columns that do not exist: {', '.join(missing)}")
        return Table({k: v for k, v in self._cols.items() if k not in set(names)})

    def with_column(self, name: str, values: Any) -> Table:
        """A copy with ``name`` set to ``values`` (replaced in place, or appended)."""
        return Table({**self._cols, name: values})

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write a header row and one record per row (numbers as Python writes floats)."""
        out = Path(path)
        cols = [v.tolist() for v in self._cols.values()]
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self._cols)
            writer.writerows(zip(*cols, strict=True))
        return out

    def to_pandas(self) -> Any:
        """A pandas ``DataFrame`` with the same columns (needs pandas)."""
        return _pandas().DataFrame(dict(self._cols))

    @classmethod
    def from_pandas(cls, frame: Any) -> Table:
        """A table from a pandas ``DataFrame``: numeric columns as float64, others as strings."""
        _pandas()
        return cls({str(c): frame[c].to_numpy() for c in frame.columns})


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise DataError(f"pandas is not installed: {PANDAS_HINT}") from None


__all__ = ["PANDAS_HINT", "Table"]
