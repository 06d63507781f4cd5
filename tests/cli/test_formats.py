"""Scanner-grade outputs (issue 15): ``--format`` and ``-o`` on every reporting command, ``-q``/``-v``
after any sub-command, a quiet end on a closed pipe, and the same exit codes everywhere (0 ok, 1 a
gate/leak/failed defence/incomplete assessment, 2 bad input).

Fast on purpose: the assessments are of a reference tree on a 1000-row table of coin flips, which
only a model that memorised its rows gives away (as in tests/report/test_sarif.py); later runs
reuse the stored job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from invguard.cli import build_parser
from tests.cli._cli import run_cli
from tests.report.test_sarif import SCHEMA, _noise_table

SRC = str(Path(__file__).parents[2] / "src")
ROOT = str(Path(__file__).parents[2])


def _tree_system(ident: str = "tree") -> dict[str, Any]:
    return {
        "id": ident,
        "target": {"type": "reference", "arch": "tree"},
        "data": {"tabular": {"csv": "t.csv", "label": "label", "sensitive": "group", "rows": 400}},
        "attacks": [{"name": "attribute"}],
    }


def _config(folder: Path, systems: list[dict[str, Any]], fail_on: str = "high") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _noise_table(folder / "t.csv")
    cfg = {
        "version": 1,
        "name": "formats",
        "output_dir": "out",
        "history_db": "h.db",
        "audit_db": None,
        "fail_on": fail_on,
        "systems": systems,
    }
    path = folder / "invguard.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-system assessment whose tree leaks (a high finding); its job runs once."""
    return _config(tmp_path_factory.mktemp("formats"), [_tree_system()])


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def _free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- assess --------------------------------------------------------------------------------------


def test_assess_prints_each_format(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = {}
    for fmt in ("table", "json", "sarif", "markdown"):
        code, out, err = run_cli(["assess", str(config), "--format", fmt, "-q"], capsys)
        assert code == 1, err  # the tree leaks: a high finding trips the gate at 'high'
        outputs[fmt] = out
    assert "gate (fail on high): FAILED" in outputs["table"]
    doc = json.loads(outputs["json"])  # stdout holds the JSON and nothing else
    assert doc["schema"] == "invguard.assessment/1"
    assert doc["status"] == "complete"
    assert doc["gate"]["passed"] is False
    assert doc["gate"]["fail_on"] == "high"
    file_doc = json.loads((config.parent / "out" / "assessment.json").read_text())
    assert doc.keys() == file_doc.keys()  # the report's JSON, not another schema
    assert doc["systems"][0].keys() == file_doc["systems"][0].keys()
    assert [f["id"] for f in doc["systems"][0]["findings"]] == ["IG-AI-001/tree/attribute"]
    sarif = json.loads(outputs["sarif"])
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(sarif)
    assert sarif["runs"][0]["results"][0]["ruleId"] == "IG-AI-001"
    md = outputs["markdown"]
    assert md.startswith("# InvGuard assessment: formats")
    assert "| tree | 0." in md
    assert "**FAILED**" in md
    assert "`IG-AI-001`" in md


def test_assess_output_file_and_config_forms(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "res" / "a.json"
    code, out, err = run_cli(
        ["assess", "-c", str(config), "--format", "json", "-o", str(target), "--fail-on", "none"],
        capsys,
    )
    assert code == 0, err  # --fail-on none: the gate is off
    assert out == ""
    assert json.loads(target.read_text())["gate"]["passed"] is True
    assert os.listdir(target.parent) == ["a.json"]  # no temporary file left behind
    assert f"wrote {target}" in err
    # CONFIG and -c CONFIG agree: fine; disagree: a one-line usage error, nothing run
    code, _, err = run_cli(["assess", str(config), "-c", str(config), "-q"], capsys)
    assert code == 1
    code, _, err = run_cli(["assess", str(config), "-c", "other.yaml", "-q"], capsys)
    assert code == 2
    _one_line(err, "two configurations given")


def test_unreachable_endpoint_is_an_incomplete_report_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_free_closed_port()}/predict"
    target: dict[str, Any] = {"type": "http", "url": url, "retries": 0}
    api = {
        "id": "api",
        "target": target,
        "data": {"builtin": "digits"},
        "attacks": [{"name": "auto"}],
    }
    table_api = {**_tree_system("table-api"), "target": dict(target)}  # no YAML alias
    path = _config(tmp_path, [_tree_system(), api, table_api], fail_on="critical")
    code, out, err = run_cli(["assess", str(path), "--format", "json", "-q"], capsys)
    assert code == 1, err  # not 2: the configuration is right, the endpoint is down
    doc = json.loads(out)
    assert doc["status"] == "incomplete"
    assert doc["gate"]["passed"] is False
    assert doc["gate"]["reason"].startswith(
        "assessment incomplete: 2 system(s) could not be assessed (api, table-api)"
    )
    systems = {s["id"]: s for s in doc["systems"]}
    assert systems["tree"]["complete"]
    assert systems["tree"]["findings"][0]["severity"] == "high"
    down = systems["api"]
    assert not down["complete"]
    assert "connection refused" in down["unavailable"]
    assert [(j["attack"], j["status"]) for j in down["jobs"]] == [("auto", "not-run")]
    assert down["findings"][0]["rule_id"] == "IG-JOB-001"
    assert down["data"]["private_images"] > 0  # the data are described, only the model is away
    table = systems["table-api"]
    assert [(j["attack"], j["status"]) for j in table["jobs"]] == [("attribute", "not-run")]
    assert table["data"]["kind"] == "tabular"
    report = tmp_path / "out"
    assert json.loads((report / "assessment.json").read_text())["status"] == "incomplete"
    html = (report / "assessment.html").read_text()
    assert "incomplete" in html
    assert "connection refused" in html
    assert html.count("not assessed") == 2  # the two systems behind the endpoint have no risk
    sarif = json.loads((report / "assessment.sarif").read_text())
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False


# --- tabular assess ------------------------------------------------------------------------------


def test_tabular_significant_leak_exits_1_in_each_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _noise_table(tmp_path / "t.csv")
    base = ["tabular", "assess", "--csv", str(tmp_path / "t.csv"), "--label", "label",
            "--sensitive", "group", "--arch", "tree", "--rows", "400", "--out", str(tmp_path / "r")]  # fmt: skip
    code, out, err = run_cli([*base, "--format", "json", "-q"], capsys)
    assert code == 1, err
    doc = json.loads(out)
    assert doc["format"] == "invguard-tabular-assessment"
    assert doc["gate"]["passed"] is False
    assert "leak significant (p = " in doc["gate"]["reason"]
    assert (
        doc["assessments"]
        == json.loads((tmp_path / "r" / "report.json").read_text())["assessments"]
    )
    code, out, _ = run_cli([*base, "--format", "markdown", "--fail-on", "none", "-q"], capsys)
    assert code == 0  # the same leak with the gate off
    assert out.startswith("# InvGuard: attribute inference assessment")
    assert "gate (fail on none): passed" in out
    code, _, err = run_cli([*base, "--format", "sarif"], capsys)
    assert code == 2
    _one_line(err, "--format sarif", "'tabular assess' has no sarif output")


def test_tabular_unreachable_endpoint_writes_an_incomplete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_free_closed_port()}/predict"
    out_dir = tmp_path / "r"
    code, out, err = run_cli(
        ["tabular", "assess", "--url", url, "--sensitive", "sex", "--rows", "50",
         "--out", str(out_dir), "--format", "json"],
        capsys,
    )  # fmt: skip
    assert code == 1, err
    assert json.loads(out)["gate"]["passed"] is False
    meta = json.loads((out_dir / "report.json").read_text())["meta"]
    assert meta["status"] == "incomplete"
    assert "connection refused" in meta["error"]


# --- history, judge, defend evaluate -------------------------------------------------------------


def _history(path: Path, runs: int, name: str = "nightly") -> Path:
    from invguard.assess.history import HistoryStore

    with HistoryStore(path) as store:
        for _ in range(runs):
            run = store.start_run(name, "invguard.yaml", "0" * 64)
            store.finish_run(run, {"status": "complete"}, {"m": {"risk_score": 0.5,
                             "risk_level": "medium", "findings": {"medium": 1}}})  # fmt: skip
    return path


def test_history_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _history(tmp_path / "h.db", 3)
    base = ["history", "--history-db", str(db)]
    code, out, _ = run_cli([*base, "--format", "json"], capsys)
    assert code == 0
    runs = json.loads(out)
    assert [r["id"] for r in runs] == [3, 2, 1]
    assert runs[0]["systems"]["m"]["risk_level"] == "medium"
    assert set(runs[0]) == {"id", "name", "config_path", "started_at", "finished_at", "status",
                            "systems"}  # fmt: skip
    assert json.loads(run_cli([*base, "--json"], capsys)[1]) == runs  # the old flag: an alias
    code, out, _ = run_cli([*base, "--format", "markdown"], capsys)
    assert code == 0
    assert out.startswith("# InvGuard assessment history")
    assert "| 3 |" in out
    assert "m 0.50 medium" in out
    code, out, _ = run_cli([*base, "-o", str(tmp_path / "h.txt")], capsys)
    assert code == 0
    assert out == ""
    assert (tmp_path / "h.txt").read_text().startswith("run    3")
    code, _, err = run_cli([*base, "--format", "sarif", "-o", str(tmp_path / "x")], capsys)
    assert code == 2
    assert not (tmp_path / "x").exists()
    _one_line(err, "'history' has no sarif output")
    code, _, err = run_cli(["history", "--history-db", str(tmp_path / "no.db"), "-o",
                            str(tmp_path / "y")], capsys)  # fmt: skip
    assert code == 2
    assert not (tmp_path / "y").exists()


def test_judge_formats(
    tmp_path: Path, model_cache: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from invguard.data import load_digits_dataset

    ds = load_digits_dataset()
    first = np.array([np.flatnonzero(ds.y_test == c)[0] for c in range(ds.num_classes)])
    np.save(tmp_path / "held.npy", ds.x_test[first])
    base = ["judge", str(tmp_path / "held.npy"), "--dataset", "digits", "--cache-dir",
            str(model_cache.root), "-q"]  # fmt: skip
    code, out, _ = run_cli([*base, "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)["verdict_top1"] >= 0.9
    code, out, _ = run_cli([*base, "--format", "markdown"], capsys)
    assert code == 0
    assert "**Verdict top-1 1.000**" in out
    assert "| reconstructed | 1.000 |" in out
    code, _, err = run_cli([*base, "--format", "sarif"], capsys)
    assert code == 2
    _one_line(err, "'judge' has no sarif output")


@pytest.mark.slow
def test_judge_markdown_on_faces_has_the_face_detector_column(
    tmp_path: Path, model_cache: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from invguard.data import load_builtin
    from invguard.judges import face_embedding_available

    if not face_embedding_available():
        pytest.skip("needs invguard[faces]")
    ds = load_builtin("att-faces")
    first = np.array([np.flatnonzero(ds.y_test == c)[0] for c in range(ds.num_classes)])
    np.save(tmp_path / "held.npy", ds.x_test[first])
    code, out, _ = run_cli(["judge", str(tmp_path / "held.npy"), "--cache-dir",
                            str(model_cache.root), "-q", "--format", "markdown"], capsys)  # fmt: skip
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| image set"))
    assert header.rstrip().endswith("| verdict | faces detected |")
    row = next(line for line in out.splitlines() if line.startswith("| reconstructed"))
    assert row.rstrip().endswith("| 1.000 |")  # every held-out photo is a face
    noise = next(line for line in out.splitlines() if line.startswith("| noise"))
    assert noise.rstrip().endswith("| 0.000 |")
    assert "- faces detected: share of images" in out


def test_defend_evaluate_exits_1_when_a_requested_defence_failed(
    tmp_path: Path, model_cache: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    system = {
        "id": "digits-softmax",
        "target": {"type": "pytorch", "reference": {"arch": "softmax"}},
        "data": {"builtin": "digits"},
        "attacks": [{"name": "miface", "budget": {"queries": 200}}],
        # label-only output needs auxiliary data for a label-only attack: this defence fails
        "defenses": {"max_accuracy_drop": 0.7, "output": [{"name": "label_only"}]},
    }
    path = tmp_path / "invguard.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "systems": [system]}), encoding="utf-8")
    base = ["defend", "evaluate", "-c", str(path), "--out", str(tmp_path / "d"), "--history-db",
            str(tmp_path / "h.db"), "--cache-dir", str(model_cache.root)]  # fmt: skip
    code, out, err = run_cli(base, capsys)
    assert code == 1
    assert "label_only" in out
    assert "1 requested defence(s) or attack(s) failed" in out
    assert "failed: digits-softmax: label_only: no black-box attack fits" in err
    # the stored evaluation is reused: the other formats cost nothing
    code, out, _ = run_cli([*base, "--json", "-q"], capsys)
    assert code == 1
    rows = json.loads(out)["digits-softmax"]["rows"]
    assert [r["name"] for r in rows] == ["none", "label_only"]
    assert rows[1]["error"]
    code, _, _ = run_cli(
        [*base, "--format", "markdown", "-o", str(tmp_path / "d.md"), "-q"], capsys
    )
    assert code == 1
    assert (tmp_path / "d.md").read_text().startswith("# InvGuard defence evaluation")
    code, _, err = run_cli([*base, "--format", "sarif"], capsys)
    assert code == 2
    _one_line(err, "'defend evaluate' has no sarif output")


# --- -q/-v anywhere, exit codes in --help, broken pipes ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "quiet", "verbose"),
    [
        (["history"], False, False),
        (["history", "-q", "-v"], True, True),
        (["-v", "history"], False, True),  # not clobbered by the sub-command's default
        (["-q", "history", "--verbose"], True, True),
        (["assess", "x.yaml", "-v"], False, True),
        (["-q", "assess"], True, False),  # assess has its own -q: still not clobbered
        (["tabular", "assess", "--arch", "tree", "--sensitive", "sex", "-q", "-v"], True, True),
        (["audit", "log", "-q"], True, False),
        (["audit", "-v", "verify"], False, True),
        (["-v", "serve", "-c", "g.yaml"], False, True),
        (["defend", "evaluate", "-v"], False, True),
        (["judge", "r.npy", "-q", "-v"], True, True),
    ],
)
def test_quiet_and_verbose_before_or_after_the_sub_command(
    argv: list[str], quiet: bool, verbose: bool
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose) == (quiet, verbose)


def test_every_command_accepts_q_and_v_and_lists_exit_codes() -> None:
    import argparse

    def leaves(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [p]
        return [leaf for s in subs for c in dict.fromkeys(s.choices.values()) for leaf in leaves(c)]

    found = leaves(build_parser())
    assert len(found) > 20
    for p in found:
        assert {"-q", "--quiet", "-v", "--verbose"} <= set(p._option_string_actions), p.prog
        text = p.format_help()
        assert "exit codes:" in text, p.prog
        assert "  2    bad input or usage" in text, p.prog
    tabular = next(p for p in found if p.prog.endswith("tabular assess")).format_help()
    assert "significantly better than the imputation baseline" in " ".join(tabular.split())


def _invguard(*args: str) -> list[str]:
    return [sys.executable, "-m", "invguard.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def test_history_json_into_head_ends_quietly(tmp_path: Path) -> None:
    # long run names: the JSON is far more than a pipe holds, so the writer meets a closed pipe
    db = _history(tmp_path / "h.db", 60, name="n" * 4000)
    cmd = _invguard("history", "--history-db", str(db), "--limit", "100", "--format", "json")
    writer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert writer.stdout is not None
    assert writer.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, timeout=60)
    writer.stdout.close()
    err = writer.stderr.read().decode()
    assert writer.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports it
    assert err == ""  # no traceback, no "Exception ignored" at exit
    assert head.stdout == b"[\n"


def test_assess_json_into_a_closed_pipe_ends_quietly(config: Path) -> None:
    """``invguard assess ... --format json | head -c 0``: the reader is gone before the first
    write; the assessment still runs (and writes its reports), the output ends quietly."""
    cmd = _invguard("assess", str(config), "--format", "json", "-q")
    writer = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT
    )
    assert writer.stdout is not None
    assert writer.stderr is not None
    writer.stdout.close()
    err = writer.stderr.read().decode()
    assert writer.wait(timeout=300) == 141
    assert err == ""
