"""The HTML reports (issue 15, item 5): inline SVG charts whose marks match the numbers, the risk
trend from a real history file, click-to-enlarge figures, the defences plot and table fixes, the
tabular HTML and Markdown, and self-containment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from invguard.assess.findings import LIFT_THRESHOLDS, risk_level
from invguard.assess.history import HistoryStore
from invguard.report.assessment import CALIBRATION_ORDER, render_html
from invguard.report.charts import RISK_BANDS
from invguard.report.defenses import (
    recommended_defence,
    render_text,
    table_rows,
    write_defense_report,
)
from invguard.report.defenses import render_html as render_defences
from invguard.report.templating import num, plain
from tests.report import samples
from tests.report.html_checks import (
    assert_every_figure_enlarges,
    assert_self_contained,
    chart,
    svgs,
)


def test_numbers_never_print_minus_zero_and_evidence_is_plain_text() -> None:
    assert num(-0.0) == "0.000"
    assert num(-0.0004) == "0.000"
    assert num(-0.0006) == "-0.001"
    assert num(0.0, signed=True) == "0.000"
    assert num(0.0123, signed=True) == "+0.012"
    assert num(None) == "-"
    assert plain({"train": 22793, "split": {"seed": 0}, "ok": True}) == (
        "train: 22793, split: (seed: 0), ok: yes"
    )
    assert plain([{"a": 1.23456789}, {"b": None}]) == "a: 1.235; b: -"


def test_bands_and_calibration_order_match_their_sources() -> None:
    from invguard.judges import CALIBRATION_ROWS

    assert CALIBRATION_ORDER == CALIBRATION_ROWS
    assert [(n, t) for n, t, _ in reversed(RISK_BANDS[1:])] == list(LIFT_THRESHOLDS)
    for name, lo, _ in RISK_BANDS[1:]:
        assert risk_level(lo) == name
        assert risk_level(lo - 1e-6) != name


def test_judge_chart_draws_every_measured_accuracy_against_chance() -> None:
    a = samples.assessment()
    html = render_html(a)
    svg = next(s for s in svgs(html) if "per judge" in s.get("aria-label", ""))  # faces: first
    bars = [b for b in svg.iter("rect") if b.get("class") == "bar"]
    ev = a.systems[0].findings[0].evidence
    per_set = len(ev["judges"]) + 1  # judges and the verdict
    assert len(bars) == per_set * (1 + len(ev["calibration"]))
    values = [float(b.get("data-value", "nan")) for b in bars]
    expected = [*(j["top1"] for j in ev["judges"].values()), ev["top1_accuracy"]]
    for row in CALIBRATION_ORDER:  # rows in the judges' order, not the stored (sorted) one
        if row in ev["calibration"]:
            c = ev["calibration"][row]
            expected += [*(c[n] for n in ev["judges"]), c["verdict_top1"]]
    assert values == pytest.approx(expected, abs=5e-4)
    # the chance line sits at chance on the bars' own scale (a bar of value v is v * scale wide)
    full = next(b for b in bars if float(b.get("data-value", 0)) == 1.0)
    x0, scale = float(full.get("x", 0)), float(full.get("width", 0))
    ref = next(line for line in svg.iter("line") if line.get("class") == "ref")
    assert float(ref.get("x1", 0)) == pytest.approx(x0 + ev["chance"] * scale, abs=0.2)
    labels = "".join(svg.itertext())
    assert "chance 0.025" in labels
    assert "pixel-ssim (unreliable)" in labels
    # the tabular finding: its attack against the imputation and prior lines
    tab = chart(html, "strongest attack against the baselines")
    refs = [
        t.text for t in tab.iter("text") if t.text and t.text.startswith(("imputation", "prior"))
    ]
    assert refs == ["imputation baseline 0.828", "prior 0.453"]
    assert [float(b.get("data-value", 0)) for b in tab.iter("rect") if b.get("class") == "bar"] == [
        0.9,
        0.83,
    ]


def test_risk_trend_from_a_real_history_file(tmp_path: Path) -> None:
    """Past runs of the same configuration file, oldest first, then this run; other files and
    unfinished runs are left out; one run only gives a one-line note, not a chart."""
    with HistoryStore(tmp_path / "history.db") as store:
        for risk in (0.2, 0.5, 0.35):
            run = store.start_run("x", "/tmp/invguard.yaml", "d")
            store.finish_run(run, {}, {"faces": {"risk_score": risk, "risk_level": "low"}})
        other = store.start_run("x", "/elsewhere.yaml", "d")
        store.finish_run(other, {}, {"faces": {"risk_score": 0.99, "risk_level": "critical"}})
        store.start_run("x", "/tmp/invguard.yaml", "d")  # still running: not in the trend
        past = store.risk_history("/tmp/invguard.yaml", "faces")
        assert [r[2] for r in past] == [0.2, 0.5, 0.35]
        assert store.risk_history("/tmp/invguard.yaml", "census") == []
    html = render_html(samples.assessment(run_id=6, risk=0.8), {"faces": past})
    svg = chart(html, "faces: risk score over 4 runs")
    points = [c for c in svg.iter("circle") if c.get("class") == "point"]
    assert [float(c.get("data-value", 0)) for c in points] == [0.2, 0.5, 0.35, 0.8]
    ys = [float(c.get("cy", 0)) for c in points]
    assert ys[1] < ys[2] < ys[0]
    assert ys[3] < ys[1]
    assert float(points[-1].get("r", 0)) > float(points[0].get("r", 0))  # this run stands out
    assert "#6" in "".join(svg.itertext())
    # census has no past run: a note instead of a chart
    assert "census): the first recorded run of this configuration" in html
    assert not [s for s in svgs(html) if "census: risk" in s.get("aria-label", "")]


def test_assessment_html_is_self_contained_enlargeable_and_free_of_reprs() -> None:
    a = samples.assessment(identities=6)
    html = render_html(a)
    assert_self_contained(html)
    # 6 gallery pairs, 3 finding charts, the defences plot (matplotlib is installed here)
    assert assert_every_figure_enlarges(html) == 6 + 3 + 1
    assert "{'" not in html
    assert "': " not in html
    assert "-0.00" not in html
    assert "report &lt;fixture&gt;" in html  # escaped


def _row_cells(html: str, name: str) -> str:
    m = re.search(rf"<tr[^>]*>\s*<td>{re.escape(name)}</td>([\s\S]*?)</tr>", html)
    assert m, name
    return m.group(1)


def test_defences_the_undefended_model_is_never_recommended(tmp_path: Path) -> None:
    """With no accuracy budget the white-box comparison keeps the undefended model: no row (and
    not the undefended one) says recommended for it; output defences still can be."""
    ev = samples.defence_evaluation(budget=0.0)
    assert ev.threats["white-box"].recommended == "none"  # what the comparison decided
    assert recommended_defence(ev, "white-box") is None
    assert recommended_defence(ev, "black-box") in ("round", "top_k")
    rows = {r["name"]: r for r in table_rows(ev)}
    assert rows["none"]["recommended"] == []
    text = render_text(ev)
    assert "RECOMMENDED" not in next(line for line in text.splitlines() if line.startswith("none"))
    paths = write_defense_report(ev, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert "recommended" not in _row_cells(html, "none")
    assert "recommended (black-box)" in html
    assert "-0.000" not in html
    assert "-0.000" not in text
    assert "0.000" in _row_cells(html, "round")  # the accuracy change of an output defence
    assert_self_contained(html)
    assert assert_every_figure_enlarges(html) == 1
    # the same in the assessment report's defence table
    full = render_html(samples.assessment(budget=0.0))
    assert "recommended" not in _row_cells(full, "none")


def test_defences_plot_legend_covers_no_point_and_labels_stay_inside() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from invguard.report.defenses import plot_figure

    fig = plot_figure(samples.defence_evaluation())
    try:
        renderer = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        page = fig.bbox
        for ax in fig.axes:
            frame = ax.get_window_extent(renderer)
            assert not legend.overlaps(frame)  # below the panels: no point under it
            assert not ax.get_legend()
            labels = [t.get_window_extent(renderer) for t in ax.texts]
            assert labels, "every panel labels its points"
            for i, box in enumerate(labels):
                label = ax.texts[i].get_text()
                assert frame.x0 <= box.x0, label
                assert box.x1 <= frame.x1 + 0.5, label
                assert frame.y0 <= box.y0, label
                assert box.y1 <= frame.y1 + 0.5, label
                assert page.x0 <= box.x0
                assert box.x1 <= page.x1
                for other in labels[i + 1 :]:
                    assert not box.overlaps(other), ax.texts[i].get_text()
            assert all("-0.000" not in t.get_text() for t in ax.texts)
    finally:
        plt.close(fig)


def test_without_matplotlib_the_defence_report_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import invguard.report.defenses as d

    monkeypatch.setattr(d, "plot_available", lambda: False)
    paths = write_defense_report(samples.defence_evaluation(), tmp_path)
    assert "png" not in paths
    assert not (tmp_path / "defenses.png").exists()
    html = paths["html"].read_text(encoding="utf-8")
    assert "needs matplotlib" in html
    assert "<img" not in html
    assert "needs matplotlib" in render_defences(samples.defence_evaluation())


def test_tabular_assess_writes_an_html_report_in_the_same_style(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from invguard.cli import main

    out = tmp_path / "rep"
    argv = ["tabular", "assess", "--arch", "tree", "--sensitive", "sex", "--rows", "300"]
    assert main([*argv, "--non-members", "--out", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "http:" not in html
    assert "https:" not in html
    assert assert_every_figure_enlarges(html) == 2  # one chart per population
    assert "{'" not in html
    assert "': " not in html
    assert "-0.000" not in html
    assert "split" in html
    assert "train: " in html
    for a in doc["assessments"]:
        rows = a["rows"]
        imputation = next(r for r in rows if r["attack"] == "imputation")
        best = max((r for r in rows if not r["baseline"]), key=lambda r: r["accuracy"])
        svg = chart(html, f"of {a['population']}: accuracy per attack")
        bars = [float(b.get("data-value", 0)) for b in svg.iter("rect") if b.get("class") == "bar"]
        assert bars == pytest.approx([r["accuracy"] for r in rows], abs=5e-4)
        assert f"imputation {imputation['accuracy']:.3f}" in "".join(svg.itertext())
        p = best["mcnemar_vs_imputation"]["p_value"]
        assert (f"{p:.3g}" if p >= 1e-4 else "&lt;1e-4") in html
        # per value of the attribute: the records holding it, as counted in the JSON
        counts = "".join(f'<td class="num"><b>{c}</b></td>' for c in a["truth_counts"].values())
        assert counts in html
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "{'" not in md
    assert "-0.000" not in md
    assert re.search(
        r"^\| split +\| train 22793, auxiliary \d+, evaluation \d+, seed 0 +\|$", md, re.M
    )
    assert "p (vs prior)" in md
    assert "p (vs imputation)" in md
    # a table needs a blank line above it to render as one
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| attack"):
            assert lines[i - 1] == ""


def test_assessment_engine_draws_the_trend_from_its_history(tmp_path: Path) -> None:
    """Two real runs of one configuration: the first report has the note, the second the chart
    with both runs (the second run reuses the job)."""
    from invguard.assess.config import load_config
    from invguard.assess.engine import run_assessment

    rng = np.random.default_rng(0)
    rows = [
        f"{a:.4f},{'xy'[g]},{'ny'[y]}"
        for a, g, y in zip(
            rng.random(600), rng.integers(0, 2, 600), rng.integers(0, 2, 600), strict=True
        )
    ]
    (tmp_path / "noise.csv").write_text("a,group,label\n" + "\n".join(rows) + "\n")
    cfg = tmp_path / "invguard.yaml"
    cfg.write_text(
        """version: 1
name: trend
output_dir: out
history_db: history.db
audit_db: audit.db
systems:
  - id: control
    target: {type: reference, arch: logreg}
    data: {tabular: {csv: noise.csv, label: label, sensitive: group, rows: 200}}
    attacks: [{name: attribute}]
""",
        encoding="utf-8",
    )
    first = run_assessment(load_config(cfg), cache_dir=tmp_path / "cache")
    html = (tmp_path / "out" / "assessment.html").read_text(encoding="utf-8")
    assert "the first recorded run of this configuration" in html
    second = run_assessment(load_config(cfg), cache_dir=tmp_path / "cache")
    assert second.jobs_reused == 1
    html = (tmp_path / "out" / "assessment.html").read_text(encoding="utf-8")
    svg = chart(html, "control: risk score over 2 runs")
    points = [float(c.get("data-value", 0)) for c in svg.iter("circle")]
    assert points == pytest.approx([first.systems[0].risk_score, second.systems[0].risk_score])
    assert_self_contained(html)
    assert_every_figure_enlarges(html)


def test_click_to_enlarge_in_headless_chromium(tmp_path: Path) -> None:
    """A real click opens a thumbnail full-window without scrolling the page; a click anywhere
    closes it, again without a jump; a chart enlarges the same way."""
    import os
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("INVGUARD_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (INVGUARD_REQUIRE_BROWSER) but not installed")
        pytest.skip("chromium not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "assessment.html"
    page_file.write_text(render_html(samples.assessment(identities=12)), encoding="utf-8")
    width = "el => el.getBoundingClientRect().width"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(page_file.as_uri())
        pair = page.locator("figure.pair").nth(7)
        pair_id = pair.get_attribute("id")
        pair.scroll_into_view_if_needed()
        before = page.evaluate("window.scrollY")
        small = pair.locator("img").first.evaluate(width)
        pair.locator("a.open").click()
        opened = page.evaluate("document.querySelector('.zoom:target')?.id")
        large = pair.locator("img").first.evaluate(width)
        after_open = page.evaluate("window.scrollY")
        page.mouse.click(20, 400)  # anywhere on the dimmed page
        closed = page.evaluate("document.querySelectorAll('.zoom:target').length")
        after_close = page.evaluate("window.scrollY")
        box = page.locator("figure.chart-box").first
        box.scroll_into_view_if_needed()
        chart_small = box.locator("svg").evaluate(width)
        box.locator("a.open").click()
        chart_large = box.locator("svg").evaluate(width)
        browser.close()
    assert before > 0
    assert opened == pair_id
    assert small == pytest.approx(48, abs=1)
    assert large > 5 * small
    assert after_open == before
    assert closed == 0
    assert after_close == before
    assert chart_large > 1.4 * chart_small
