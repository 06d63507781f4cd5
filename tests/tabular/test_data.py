"""Adult loading, the user's CSV, the split and the encoding."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from invguard.errors import DataError, InvalidParameterError
from invguard.tabular import data as data_mod
from invguard.tabular.data import (
    ADULT_FILE,
    ADULT_ROWS,
    TabularData,
    TabularEncoder,
    adult_path,
    load_adult,
    load_csv,
    split_rows,
)
from invguard.tabular.scenario import TabularScenario, build_scenario
from invguard.tabular.table import Table


def test_adult_is_read_from_the_packaged_file_without_pandas() -> None:
    code = (
        "import sys; from invguard.tabular.data import load_adult; d = load_adult(); "
        "bad = [m for m in ('pandas', 'mglearn') if m in sys.modules]; "
        "assert not bad, bad; print(d.n_rows)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == str(ADULT_ROWS)
    path = adult_path()
    assert path.name == "adult.data.gz"
    assert 300_000 < path.stat().st_size < 500_000  # 3.97 MB of text, compressed
    notice = (path.parent / "NOTICE").read_text()
    assert "(CC BY 4.0)" in notice
    assert "Becker" in notice


def test_damaged_adult_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = gzip.decompress(adult_path().read_bytes())
    bad = tmp_path / "datasets" / ADULT_FILE
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(raw.replace(b"State-gov", b"State-gox", 1)))
    monkeypatch.setattr(data_mod, "__file__", str(tmp_path / "data.py"))
    with pytest.raises(DataError, match="damaged: its SHA-256 does not match"):
        load_adult()


def test_adult_schema(adult: TabularData) -> None:
    assert adult.n_rows == ADULT_ROWS
    assert adult.label == "income"
    assert "fnlwgt" not in adult.features
    assert len(adult.features) == 13
    assert {"sex", "race", "relationship"} <= adult.categorical
    assert "age" not in adult.categorical
    assert set(adult.labels()) == {"<=50K", ">50K"}
    assert np.unique(adult.frame["sex"]).tolist() == ["Female", "Male"]
    assert "?" in set(adult.frame["workclass"])  # missing values stay a category


def test_split_is_seeded_stratified_and_disjoint(adult: TabularData) -> None:
    labels = adult.labels()
    a = split_rows(labels, seed=0)
    b = split_rows(labels, seed=0)
    c = split_rows(labels, seed=1)
    assert np.array_equal(a.train, b.train)
    assert np.array_equal(a.auxiliary, b.auxiliary)
    assert not np.array_equal(a.train, c.train)
    parts = np.concatenate([a.train, a.auxiliary, a.evaluation])
    assert len(np.unique(parts)) == len(parts) == ADULT_ROWS
    assert abs(len(a.train) / ADULT_ROWS - 0.7) < 1e-3
    assert abs(len(a.auxiliary) - len(a.evaluation)) <= 2
    rate = np.mean(labels == ">50K")
    for rows in (a.train, a.auxiliary, a.evaluation):
        assert abs(np.mean(labels[rows] == ">50K") - rate) < 2e-3


def test_split_validates_its_parameters() -> None:
    with pytest.raises(InvalidParameterError, match="'train_fraction'"):
        split_rows(["a", "b"], train_fraction=1.5)
    with pytest.raises(InvalidParameterError, match="'seed'"):
        split_rows(["a", "b"], seed=-1)
    with pytest.raises(InvalidParameterError, match="non-empty"):
        split_rows([])


def test_encoding_is_in_unit_range_and_one_hot(sex: TabularScenario) -> None:
    x, enc = sex.x, sex.encoder
    assert x.dtype == np.float32
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert x.shape == (ADULT_ROWS, enc.n_features)
    for b in enc.blocks:
        if b.kind == "categorical":
            sums = x[sex.split.train, b.start : b.stop].sum(axis=1)
            assert np.all(sums == 1.0)  # every training value is a known category
    names = enc.feature_names
    assert len(names) == enc.n_features
    assert "sex=Male" in names
    assert "age" in names


def test_attribute_enumerates_every_candidate(sex: TabularScenario) -> None:
    a = sex.attribute
    assert a.values == ("Female", "Male")
    assert np.array_equal(a.encodings, np.eye(2, dtype=np.float32))
    block = sex.x[:, a.columns]
    assert np.array_equal(block.argmax(axis=1), sex.s)
    race = sex.encoder.attribute("race")
    assert race.k == 5


def test_encoder_json_round_trip(sex: TabularScenario, tmp_path: Path) -> None:
    path = sex.encoder.save(tmp_path / "enc.json")
    loaded = TabularEncoder.load(path)
    assert loaded.to_dict() == sex.encoder.to_dict()
    frame = sex.data.frame.head(50)
    assert np.array_equal(loaded.encode(frame), sex.encoder.encode(frame))
    doc = json.loads(path.read_text())
    doc["version"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="version 99"):
        TabularEncoder.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not an InvGuard tabular encoding"):
        TabularEncoder.load(tmp_path / "junk.json")


def test_unseen_category_encodes_as_zeros_and_unknown_label_is_an_error(
    sex: TabularScenario,
) -> None:
    frame = sex.data.frame.head(3).with_column("race", ["Martian", "White", "Black"])
    x = sex.encoder.encode(frame)
    race = sex.encoder.block("race")
    assert x[0, race.start : race.stop].sum() == 0.0
    assert x[1, race.start : race.stop].sum() == 1.0
    assert sex.encoder.sensitive_codes(frame, "race").tolist()[0] == -1
    frame = frame.with_column("income", ["<=50K", "rich", ">50K"])
    with pytest.raises(DataError, match="'rich'"):
        sex.encoder.encode_labels(frame)


def test_sensitive_column_checks(adult: TabularData) -> None:
    with pytest.raises(DataError, match="sensitive column 'gender' does not exist in adult"):
        build_scenario(adult, "gender")
    with pytest.raises(DataError, match="is numeric"):
        build_scenario(adult, "age")
    with pytest.raises(DataError, match="is the label"):
        build_scenario(adult, "income")


def _write_csv(adult: TabularData, path: Path, n: int = 400, drop: tuple[str, ...] = ()) -> Path:
    adult.frame.head(n).drop(drop).to_csv(path)
    return path


def test_load_csv_infers_kinds(adult: TabularData, tmp_path: Path) -> None:
    data = load_csv(_write_csv(adult, tmp_path / "a.csv"), label="income")
    assert data.features == adult.features
    assert data.categorical == adult.categorical
    forced = load_csv(tmp_path / "a.csv", label="income", categorical=["education-num"])
    assert "education-num" in forced.categorical


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        ("a,b,y\n" + "1,x,p\n" * 20, {"label": "z"}, "label column 'z' does not exist"),
        ("a,a,y\n" + "1,2,p\n" * 20, {"label": "y"}, "duplicate columns: a"),
        ("a,b,y\n" + "1,x,p\n" * 20, {"label": "y"}, "single value"),
        ("a,b,y\n" + "1,x,p\n,x,q\n" * 10, {"label": "y"}, "numeric column 'a' of c.csv has 10"),
        ("a,b,y\n1,x,p\n", {"label": "y"}, "at least 10 are needed"),
        ("", {"label": "y"}, "empty"),
        (
            "a,b,y\n" + "1,x,p\n2,y,q\n" * 10,
            {"label": "y", "categorical": ["c"]},
            "categorical column 'c' does not exist",
        ),
    ],
    ids=["label", "duplicate", "one-class", "empty-numeric", "short", "empty-file", "categorical"],
)
def test_load_csv_errors_are_one_line_and_name_the_column(
    tmp_path: Path, content: str, kwargs: dict[str, object], match: str
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        load_csv(path, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_check_columns_names_missing_and_extra_columns(
    adult: TabularData, sex: TabularScenario, tmp_path: Path
) -> None:
    data = load_csv(_write_csv(adult, tmp_path / "d.csv", drop=("age", "race")), label="income")
    with pytest.raises(DataError, match="lacks age, race"):
        sex.encoder.check_columns(data, model="m.skops")
    frame = adult.frame.head(100).with_column("shoe-size", np.full(100, 42.0))
    extra = TabularData("e.csv", frame, "income", (*adult.features, "shoe-size"), adult.categorical)
    with pytest.raises(DataError, match=r"has shoe-size, which m\.skops was not trained on"):
        sex.encoder.check_columns(extra, model="m.skops")


def test_numeric_column_with_text_becomes_categorical(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "a,b,y\n"
        + "".join(f"{i},{'x' if i % 2 else 3},{'p' if i % 3 else 'q'}\n" for i in range(30))
    )
    data = load_csv(path, label="y")
    assert data.categorical == frozenset({"b"})
    assert data.frame["a"].dtype == np.float64
    assert data.frame["b"].dtype.kind == "U"
    assert isinstance(data.frame, Table)
