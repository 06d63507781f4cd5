"""``invguard tabular ...`` through a parser built like the top level's, with its error handling."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from invguard.cli.tabular import ARCHS, add_tabular_parser
from invguard.errors import InvGuardError
from invguard.gateway.model_server import PREDICT_PATH, create_model_app, serve_in_thread
from invguard.tabular.data import TabularData
from invguard.tabular.models import TABULAR_ARCHS, save_tabular_model
from invguard.tabular.scenario import TabularScenario
from tests.tabular.conftest import _single_thread  # noqa: F401  (autouse fixture: one thread)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse and dispatch like ``invguard.cli.main``: InvGuardError -> one line, exit 2."""
    parser = argparse.ArgumentParser(prog="invguard")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_tabular_parser(sub)
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args))
    except InvGuardError as exc:
        print(f"invguard: error: {exc}", file=sys.stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("invguard: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def saved_logreg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "logreg.skops"
    parser = argparse.ArgumentParser(prog="invguard")
    sub = parser.add_subparsers(dest="command")
    add_tabular_parser(sub)
    args = parser.parse_args(["tabular", "train", "--arch", "logreg", "--out", str(out)])
    assert args.handler(args) == 0
    return out


def test_cli_module_is_import_light() -> None:
    code = (
        "import sys, invguard.cli.tabular; "
        "heavy = [m for m in ('torch', 'pandas', 'sklearn', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert ARCHS == TABULAR_ARCHS


def test_assess_reference_tree_prints_table_and_writes_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    code, stdout, _ = run(
        [
            "tabular",
            "assess",
            "--arch",
            "tree",
            "--sensitive",
            "sex",
            "--rows",
            "400",
            "--non-members",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    assert "fredrikson-map (imputation prior)" in stdout
    assert "fredrikson-tree (white-box)" in stdout
    assert "400 members" in stdout
    assert "non-members" in stdout
    doc = json.loads((out / "report.json").read_text())
    assert doc["format"] == "invguard-tabular-assessment"
    assert [a["population"] for a in doc["assessments"]] == ["members", "non-members"]
    rows = doc["assessments"][0]["rows"]
    assert rows[0]["label"].startswith("baseline: prior")
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert doc["meta"]["split"]["seed"] == 0
    assert "# InvGuard: attribute inference assessment" in (out / "report.md").read_text()


def test_train_then_assess_a_saved_model(
    saved_logreg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert saved_logreg.with_suffix(".encoding.json").is_file()
    code, stdout, _ = run(
        [
            "tabular",
            "assess",
            "--model",
            str(saved_logreg),
            "--sensitive",
            "race",
            "--rows",
            "300",
            "--out",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert code == 0
    assert "logreg.skops: 'race' of 300 members" in stdout


def test_assess_over_http(
    sex: TabularScenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from invguard.tabular.models import train_tabular_model

    model = train_tabular_model("logreg", sex.train_x, sex.train_y, seed=0).model
    app = create_model_app(
        model.predict_proba, input_shape=(sex.encoder.n_features,), num_classes=2
    )
    with serve_in_thread(app) as base:
        code, stdout, err = run(
            [
                "tabular",
                "assess",
                "--url",
                base + PREDICT_PATH,
                "--sensitive",
                "sex",
                "--rows",
                "100",
                "--out",
                str(tmp_path / "h"),
            ],
            capsys,
        )
    assert code == 0, err
    assert "csmia" in stdout


def _csv(adult: TabularData, path: Path, n: int, drop: tuple[str, ...] = ()) -> Path:
    adult.frame.head(n).drop(drop).to_csv(path)
    return path


def test_assess_on_a_users_csv(
    adult: TabularData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _csv(adult, tmp_path / "people.csv", 3000)
    code, stdout, err = run(
        [
            "tabular",
            "assess",
            "--csv",
            str(path),
            "--label",
            "income",
            "--sensitive",
            "sex",
            "--arch",
            "logreg",
            "--rows",
            "200",
            "--out",
            str(tmp_path / "c"),
        ],
        capsys,
    )
    assert code == 0, err
    assert "'sex' of 200 members" in stdout


def test_error_sensitive_column_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["tabular", "assess", "--arch", "tree", "--sensitive", "gender"], capsys)
    assert code == 2
    line = _one_line_error(err)
    assert "sensitive column 'gender' does not exist in adult" in line
    assert "relationship" in line  # lists the columns there are


def test_error_csv_columns_differ_from_the_model(
    adult: TabularData,
    saved_logreg: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _csv(adult, tmp_path / "other.csv", 500, drop=("hours-per-week", "education"))
    code, _, err = run(
        [
            "tabular",
            "assess",
            "--csv",
            str(path),
            "--label",
            "income",
            "--sensitive",
            "sex",
            "--model",
            str(saved_logreg),
        ],
        capsys,
    )
    assert code == 2
    line = _one_line_error(err)
    assert "other.csv does not have the columns logreg.skops expects" in line
    assert "lacks education, hours-per-week" in line


def test_error_model_outputs_no_scores(
    sex: TabularScenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.linear_model import RidgeClassifier

    ridge = RidgeClassifier().fit(sex.train_x, sex.train_y)
    path, _ = save_tabular_model(ridge, tmp_path / "ridge.skops", sex.encoder)
    code, _, err = run(["tabular", "assess", "--model", str(path), "--sensitive", "sex"], capsys)
    assert code == 2
    line = _one_line_error(err)
    assert "ridge.skops outputs labels only, no class scores" in line


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--csv", "x.csv", "--sensitive", "sex", "--arch", "tree"], "--csv needs --label"),
        (["--label", "income", "--sensitive", "sex", "--arch", "tree"], "apply to --csv only"),
        (["--model", "missing.skops", "--sensitive", "sex"], "missing.skops does not exist"),
        (["--model", "model.pkl", "--sensitive", "sex"], "must be a .skops or .onnx file"),
        (["--arch", "tree", "--sensitive", "sex", "--rows", "0"], "'rows' parameter"),
        (["--arch", "tree", "--sensitive", "age"], "sensitive column 'age' of adult is numeric"),
    ],
    ids=["csv-label", "label-adult", "missing-model", "pickle", "rows", "numeric"],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["tabular", "assess", *argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert match in _one_line_error(err)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["tabular", "assess", "--arch", "svm", "--sensitive", "sex"], capsys)
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        run(["tabular", "assess", "--sensitive", "sex"], capsys)  # no model given
    assert exc.value.code == 2
