"""The column table: shapes, selection, CSV round trip and pandas conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invguard.errors import DataError
from invguard.tabular.data import load_csv
from invguard.tabular.table import Table


def _table() -> Table:
    rng = np.random.default_rng(0)
    return Table(
        {
            "age": rng.integers(18, 90, 30),
            "sex": rng.choice(["Female", "Male"], 30),
            "label": np.where(rng.random(30) < 0.5, "p", "q"),
        }
    )


def test_columns_are_float64_or_strings_of_one_length() -> None:
    t = _table()
    assert len(t) == t.n_rows == 30
    assert t.columns == ("age", "sex", "label")
    assert t["age"].dtype == np.float64
    assert t["sex"].dtype.kind == "U"
    assert "sex" in t
    assert "income" not in t
    with pytest.raises(KeyError):
        t["income"]
    with pytest.raises(DataError, match="one length, got a: 2, b: 3"):
        Table({"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(DataError, match="column 'a' must be 1-d"):
        Table({"a": np.zeros((2, 2))})


def test_take_head_drop_and_with_column_leave_the_original_alone() -> None:
    t = _table()
    rows = t.take([4, 0, 4])
    assert rows["age"].tolist() == [t["age"][4], t["age"][0], t["age"][4]]
    assert t.head(5)["sex"].tolist() == t["sex"][:5].tolist()
    assert t.drop(["sex"]).columns == ("age", "label")
    with pytest.raises(DataError, match="do not exist: shoe"):
        t.drop(["shoe"])
    changed = t.with_column("sex", np.full(30, "X"))
    assert set(changed["sex"].tolist()) == {"X"}
    assert set(t["sex"].tolist()) == {"Female", "Male"}
    assert changed.columns == t.columns
    assert t.with_column("w", np.ones(30)).columns[-1] == "w"


def test_csv_round_trip_through_load_csv(tmp_path: Path) -> None:
    t = _table()
    data = load_csv(t.to_csv(tmp_path / "t.csv"), label="label")
    assert data.categorical == frozenset({"sex"})
    for col in t.columns:
        assert data.frame[col].tolist() == t[col].tolist()


def test_pandas_conversion_both_ways() -> None:
    pd = pytest.importorskip("pandas")  # the 'tabular' extra
    t = _table()
    frame = t.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(t.columns)
    back = Table.from_pandas(frame)
    for col in t.columns:
        assert np.array_equal(back[col], t[col])
        assert back[col].dtype.kind == t[col].dtype.kind


def test_ragged_csv_rows_are_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("a,b,y\n" + "1,x,p\n" * 5 + "1,x\n" + "2,y,q\n" * 5)
    with pytest.raises(DataError, match="data row 6 has 2 fields, the header has 3") as err:
        load_csv(path, label="y")
    assert "\n" not in str(err.value)
