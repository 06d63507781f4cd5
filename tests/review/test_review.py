"""Human review: the blind sheet and its key, labels back into the report, kappa, the CLI, and the
sheet in a real browser. Report folders are built here from real digits images."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from invguard.cli.review import add_review_parser
from invguard.data import ImageDataset
from invguard.errors import InvGuardError
from invguard.judges.base import JudgeVotes
from invguard.judges.evaluate import Judgement
from invguard.judges.panel import combine
from invguard.metrics import wilson_interval
from invguard.review import (
    KEY_NAME,
    LABELS_SCHEMA,
    ReviewError,
    ReviewKey,
    export_sheet,
    human_decisions,
    import_labels,
    read_key,
)

JUDGES = ("evaluation-model", "face-embedding")
N = 10  # reconstructions: one per digit class
# rank of the true class per judge and reconstruction (0: the judge named it first)
RANKS = {
    "evaluation-model": [0, 0, 3, 0, 1, 0, 2, 0, 0, 5],
    "face-embedding": [0, 4, 0, 0, 2, 0, 0, 1, 0, 0],
}


def make_report(
    root: Path, digits: ImageDataset, *, source: str | None = "digits", shift: float = 0.0
) -> Path:
    """A report folder: class-mean digits as 'reconstructions' and a report.json in the spec."""
    root.mkdir(parents=True, exist_ok=True)
    classes = np.arange(N, dtype=np.int64)
    x = np.stack([digits.class_images(int(c)).mean(axis=0) for c in classes])
    x = np.clip(x + shift, 0.0, 1.0).astype(np.float32)
    np.savez(root / "reconstructions.npz", x=x, classes=classes)
    # the judgement and per_class rows as the judges module writes them
    votes = {
        j: JudgeVotes(j, classes, classes.copy(), np.asarray(r, dtype=np.int64), 10)
        for j, r in RANKS.items()
    }
    judged = Judgement(
        reconstructions=combine(votes, classes),
        calibration={},
        reliability={j: {"status": "reliable"} for j in JUDGES},
        judges=[],
    )
    rows = judged.per_class()
    for row in rows:
        row.update(name=f"digit-name-{row['class']}", mse=0.01 * row["class"])
    report = {
        "schema": "invguard.inversion-report/1",
        "title": "fake run",
        "dataset": {
            "name": "digits-8x8",
            "source": source,
            "num_classes": 10,
            "image_shape": [1, 8, 8],
        },
        "judgement": judged.summary(),
        "metrics": {"attack_accuracy": 0.5},
        "per_class": rows,
    }
    (root / "report.json").write_text(json.dumps(report, indent=2))
    return root


def key_pairs(root: Path) -> dict[str, dict[str, Any]]:
    pairs: dict[str, dict[str, Any]] = json.loads((root / KEY_NAME).read_text())["pairs"]
    return pairs


def write_labels(path: Path, sheet: str, labels: dict[str, str], **extra: Any) -> Path:
    body = {"schema": LABELS_SCHEMA, "sheet": sheet, "reviewer": "Ada", "labels": labels, **extra}
    path.write_text(json.dumps(body))
    return path


def sheet_of(root: Path) -> str:
    sheet: str = json.loads((root / KEY_NAME).read_text())["sheet"]
    return sheet


@pytest.fixture
def exported(tmp_path: Path, digits: ImageDataset) -> Path:
    root = make_report(tmp_path / "run", digits)
    export_sheet(root, seed=7)
    return root


# ---------------------------------------------------------------------------------------------
# export


@pytest.mark.parametrize("k", [1, 3])
def test_export_pairs_and_key(tmp_path: Path, digits: ImageDataset, k: int) -> None:
    root = make_report(tmp_path / "run", digits)
    html_path, key_path = export_sheet(root, seed=0, distractors=k)
    assert html_path == root / "review.html"
    assert key_path == root / KEY_NAME
    html = html_path.read_text()
    ids = re.findall(r'data-pair="([0-9a-f]{12})"', html)
    assert len(ids) == len(set(ids)) == N * (k + 1)
    pairs = key_pairs(root)
    assert set(pairs) == set(ids)  # the key maps every pair on the sheet, and nothing else
    for i in range(N):
        mine = [p for p in pairs.values() if p["reconstruction"] == i]
        assert len(mine) == k + 1
        assert [p["class"] for p in mine if p["true"]] == [i]
        shown = [p["class"] for p in mine if not p["true"]]
        assert len(set(shown)) == k
        assert i not in shown
        for p in mine:  # the candidate is a training image of the class the key says
            assert digits.y_train[p["train_index"]] == p["class"]
    # shuffled across reconstructions: the true pairs are not all first, nor grouped
    order = [pairs[i]["reconstruction"] for i in ids]
    assert order != sorted(order)
    assert [pairs[i]["true"] for i in ids] != [True] * N + [False] * (N * k)


def test_sheet_is_blind_and_self_contained(exported: Path) -> None:
    html = (exported / "review.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # all but the images
    report = json.loads((exported / "report.json").read_text())
    forbidden = [
        *JUDGES,
        "digit-name-",
        "judge",
        "verdict",
        "rank",
        "train_index",
        "review-key",
        "reconstruction",
        "digits",
        "http:",
        "https:",
        "//",
        '"true":',
        '"class":',
    ]
    for word in forbidden:
        assert word not in text, word
    for row in report["per_class"]:
        assert row["name"] not in text
    # every card has the same markup: only its id and its images differ
    sections = re.findall(r'<section class="pair".*?</section>', html, flags=re.S)
    assert len(sections) == 2 * N
    norm = {re.sub(r'(data-pair|src)="[^"]*"|pair \d+ of \d+', "", s) for s in sections}
    assert len(norm) == 1
    assert set(re.findall(r"data-([a-z]+)=", html)) == {"pair", "label"}
    # images inline as PNG data URIs, upscaled (nearest neighbour) from 8x8
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 4 * N
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    img = Image.open(io.BytesIO(base64.b64decode(srcs[0].split(",", 1)[1])))
    assert img.size == (128, 128)
    assert len(set(np.asarray(img).ravel().tolist())) <= 64  # still 8x8 blocks: no smoothing
    assert "Save labels" in html
    assert "window.invguardLabels" in html


def test_export_is_deterministic_with_a_seed(tmp_path: Path, digits: ImageDataset) -> None:
    root = make_report(tmp_path / "run", digits)
    out_a = export_sheet(root, seed=3, out=tmp_path / "a.html")
    key_a = (root / KEY_NAME).read_bytes()
    out_b = export_sheet(root, seed=3, out=tmp_path / "b.html")
    assert out_a[0].read_bytes() == out_b[0].read_bytes()
    assert (root / KEY_NAME).read_bytes() == key_a
    export_sheet(root, seed=4, out=tmp_path / "c.html")
    assert (root / KEY_NAME).read_bytes() != key_a
    assert (tmp_path / "c.html").read_bytes() != out_a[0].read_bytes()
    assert not (root / "review.html").exists()  # -o puts the sheet elsewhere; the key stays


def test_export_needs_data_for_user_data_sets(tmp_path: Path, digits: ImageDataset) -> None:
    root = make_report(tmp_path / "run", digits, source=None)
    with pytest.raises(ReviewError, match="--data") as exc:
        export_sheet(root)
    assert "\n" not in str(exc.value)
    npz = tmp_path / "private.npz"
    np.savez(
        npz,
        x_train=digits.x_train,
        y_train=digits.y_train,
        x_test=digits.x_test,
        y_test=digits.y_test,
    )
    export_sheet(root, dataset=npz, seed=1)
    assert len(key_pairs(root)) == 2 * N
    # an image folder (read as 8-bit PNGs, sized like the reconstructions)
    folder = tmp_path / "images"
    for c in range(10):
        (folder / "train" / f"c{c}").mkdir(parents=True)
        for j, img in enumerate(digits.class_images(c)[:2]):
            Image.fromarray((img[0] * 255).astype(np.uint8)).save(
                folder / "train" / f"c{c}" / f"{j}.png"
            )
    export_sheet(root, dataset=folder, seed=1)
    assert len(key_pairs(root)) == 2 * N
    wrong = tmp_path / "five.npz"
    keep = digits.y_train < 5
    np.savez(
        wrong,
        x_train=digits.x_train[keep],
        y_train=digits.y_train[keep],
        x_test=digits.x_test[:0],
        y_test=digits.y_test[:0],
    )
    with pytest.raises(InvGuardError, match="classes"):
        export_sheet(root, dataset=wrong)


def test_export_refuses_bad_folders(tmp_path: Path, digits: ImageDataset) -> None:
    with pytest.raises(ReviewError, match=r"no report\.json"):
        export_sheet(tmp_path)
    root = make_report(tmp_path / "run", digits)
    with pytest.raises(ReviewError, match="distractors 10"):
        export_sheet(root, distractors=10)
    with pytest.raises(InvGuardError, match="distractors"):
        export_sheet(root, distractors=0)
    with pytest.raises(ReviewError, match="overwrite"):
        export_sheet(root, out=root / "report.json")
    (root / "reconstructions.npz").unlink()
    with pytest.raises(ReviewError, match=r"reconstructions\.npz"):
        export_sheet(root)


# ---------------------------------------------------------------------------------------------
# import


TRUTH = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 0], dtype=np.int8)  # which identities a person sees


def perfect_labels(root: Path, truth: np.ndarray) -> dict[str, str]:
    """A reviewer who is always right about ``truth``: the true pair 'same' iff reconstructed."""
    return {
        pid: "same" if p["true"] and truth[p["reconstruction"]] == 1 else "different"
        for pid, p in key_pairs(root).items()
    }


def test_perfect_reviewer_and_kappa(exported: Path, tmp_path: Path) -> None:
    before = json.loads((exported / "report.json").read_text())
    labels = perfect_labels(exported, TRUTH)
    pairs = key_pairs(exported)
    # reconstruction 8: one pair unsure; 9: its true pair not labelled -> neither is reviewed
    labels[next(p for p, e in pairs.items() if e["reconstruction"] == 8)] = "unsure"
    del labels[next(p for p, e in pairs.items() if e["reconstruction"] == 9 and e["true"])]
    path = write_labels(tmp_path / "labels.json", sheet_of(exported), labels)
    review = import_labels(path, exported)

    human = np.array(TRUTH, dtype=np.int8)
    human[8:] = -1
    key = read_key(exported / KEY_NAME)
    assert human_decisions(key, labels).tolist() == human.tolist()
    assert review["reviewed"] == 8
    assert review["reconstructed"] == int(TRUTH[:8].sum())
    assert review["reviewer"] == "Ada"
    assert review["sheet"] == sheet_of(exported)
    assert review["pairs"]["total"] == 2 * N
    assert review["pairs"]["missing"] == 1
    assert review["pairs"]["unsure"] == 1
    assert review["pairs"]["distractors_marked_same"] == 0
    for j in JUDGES:
        hits = (np.asarray(RANKS[j]) == 0)[:8]
        want = cohen_kappa_score(TRUTH[:8].astype(int), hits.astype(int))
        assert review["kappa"][j] == pytest.approx(want)
        assert review["agreement"][j] == pytest.approx(float((hits == TRUTH[:8]).mean()))

    after = json.loads((exported / "report.json").read_text())
    assert after["human_review"] == review
    auto = np.asarray(RANKS[JUDGES[0]]) == 0
    auto &= np.asarray(RANKS[JUDGES[1]]) == 0  # two voters: both must name the identity
    want_verdict = np.where(human >= 0, human == 1, auto)
    rows = after["per_class"]
    assert [r["verdict_top1"] for r in rows] == want_verdict.tolist()
    assert [r.get("human") for r in rows] == [
        ("same" if h == 1 else "different") if h >= 0 else None for h in human.tolist()
    ]
    j = after["judgement"]
    assert j["verdict_top1"] == pytest.approx(want_verdict.mean())
    assert j["automatic_verdict_top1"] == before["judgement"]["verdict_top1"]
    assert j["identities_reconstructed"] == int(want_verdict.sum())
    want_ci = wilson_interval(int(want_verdict.sum()), len(want_verdict))
    assert j["verdict_top1_interval"] == pytest.approx(list(want_ci))  # follows the review
    assert j["human"] == 8
    human_rows = [a for a in j["agreement"] if a["b"] == "human"]
    assert [(a["a"], a["n"]) for a in human_rows] == [(name, 8) for name in JUDGES]
    assert [a["kappa"] for a in human_rows] == [review["kappa"][name] for name in JUDGES]
    assert len(j["agreement"]) == 1 + len(JUDGES)  # the judges' own pair is kept
    # top-5 follows the human label too (top-1 implies top-5)
    assert all(r["verdict_top5"] or not r["verdict_top1"] for r in rows)


# per reconstruction: labels of (true pair, distractor, distractor) -> the human decision
RULE_CASES = [
    (("same", "different", "different"), 1),
    (("different", "different", "different"), 0),
    (("same", "same", "different"), 0),  # also matched another identity: not a reconstruction
    (("different", None, "different"), 0),  # the true pair marked different decides
    (("unsure", "same", "different"), 0),  # a distractor marked same decides
    (("same", "unsure", "different"), -1),
    (("same", None, "different"), -1),
    ((None, "different", "different"), -1),
    (("unsure", "different", "different"), -1),
]


def test_decision_rule() -> None:
    pairs: dict[str, tuple[int, int, bool]] = {}
    labels: dict[str, str] = {}
    for i, (marks, _) in enumerate(RULE_CASES):
        for j, mark in enumerate(marks):
            pid = f"{i:02d}{j:010d}"
            pairs[pid] = (i, 10 * i + j, j == 0)
            if mark is not None:
                labels[pid] = mark
    key = ReviewKey(sheet="s", reconstructions=len(RULE_CASES), pairs=pairs)
    assert human_decisions(key, labels).tolist() == [want for _, want in RULE_CASES]
    assert human_decisions(key, {}).tolist() == [-1] * len(RULE_CASES)


def test_distractor_marked_same_on_a_real_sheet(exported: Path) -> None:
    key = read_key(exported / KEY_NAME)
    labels = perfect_labels(exported, np.ones(N, dtype=np.int8))
    wrong = next(p for p, e in key_pairs(exported).items() if not e["true"])
    labels[wrong] = "same"
    decisions = human_decisions(key, labels)
    assert decisions[key.pairs[wrong][0]] == 0
    assert (np.delete(decisions, key.pairs[wrong][0]) == 1).all()


def test_reviewer_who_says_same_to_everything(exported: Path, tmp_path: Path) -> None:
    labels = dict.fromkeys(key_pairs(exported), "same")
    path = write_labels(tmp_path / "labels.json", sheet_of(exported), labels)
    review = import_labels(path, exported)
    assert review["reviewed"] == N
    assert review["reconstructed"] == 0
    rows = json.loads((exported / "report.json").read_text())["per_class"]
    assert all(r["human"] == "different" and not r["verdict_top1"] for r in rows)


def _mutate(kind: str, body: dict[str, Any]) -> str:
    pid = next(iter(body["labels"]))
    if kind == "schema":
        body["schema"] = "invguard.review-labels/0"
    elif kind == "sheet":
        body["sheet"] = "0123456789abcdef"
    elif kind == "unknown id":
        body["labels"]["ffffffffffff"] = "same"
    elif kind == "bad value":
        body["labels"][pid] = "maybe"
    elif kind == "labels":
        body["labels"] = ["same"]
    elif kind == "reviewer":
        body["reviewer"] = 42
    elif kind == "not JSON":
        return json.dumps(body)[:-5]
    return json.dumps(body)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("schema", "schema 'invguard.review-labels/0'"),
        ("sheet", "sheet '0123456789abcdef'"),
        ("unknown id", "unknown pair id 'ffffffffffff'"),
        ("bad value", "label 'maybe'"),
        ("labels", "'labels' must be an object"),
        ("reviewer", "'reviewer' must be text"),
        ("not JSON", "is not JSON"),
    ],
)
def test_bad_labels_files_are_refused(
    exported: Path, tmp_path: Path, kind: str, message: str
) -> None:
    report = (exported / "report.json").read_bytes()
    body = {
        "schema": LABELS_SCHEMA,
        "sheet": sheet_of(exported),
        "reviewer": "Ada",
        "labels": perfect_labels(exported, TRUTH),
    }
    path = tmp_path / "labels.json"
    path.write_text(_mutate(kind, body))
    with pytest.raises(InvGuardError) as exc:
        import_labels(path, exported)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert (exported / "report.json").read_bytes() == report  # nothing written


def test_key_of_another_run_is_refused(
    exported: Path, tmp_path: Path, digits: ImageDataset
) -> None:
    other = make_report(tmp_path / "other", digits, shift=0.1)
    labels = write_labels(tmp_path / "l.json", sheet_of(exported), perfect_labels(exported, TRUTH))
    with pytest.raises(ReviewError, match="another run"):
        import_labels(labels, other, key=exported / KEY_NAME)
    with pytest.raises(ReviewError, match="no review key"):
        import_labels(labels, other)


def test_report_updated_atomically_keeping_other_keys(exported: Path, tmp_path: Path) -> None:
    before = json.loads((exported / "report.json").read_text())
    sheet = sheet_of(exported)
    import_labels(
        write_labels(tmp_path / "a.json", sheet, perfect_labels(exported, TRUTH)), exported
    )
    after = json.loads((exported / "report.json").read_text())
    for k, v in before.items():
        if k not in ("judgement", "per_class"):
            assert after[k] == v, k
    for k in ("judges", "voters"):
        assert after["judgement"][k] == before["judgement"][k]
    assert after["judgement"]["automatic_verdict_top5"] == before["judgement"]["verdict_top5"]
    for old, new in zip(before["per_class"], after["per_class"], strict=True):
        assert {k: new[k] for k in old if k not in ("verdict_top1", "verdict_top5")} == {
            k: v for k, v in old.items() if k not in ("verdict_top1", "verdict_top5")
        }
    assert sorted(p.name for p in exported.iterdir()) == [
        "reconstructions.npz",
        "report.json",
        "review-key.json",
        "review.html",
    ]  # no temporary files left behind
    # a second import replaces the first; the automatic verdict stays the one before any review
    half = {
        p: v
        for p, v in perfect_labels(exported, TRUTH).items()
        if key_pairs(exported)[p]["reconstruction"] < 5
    }
    review = import_labels(write_labels(tmp_path / "b.json", sheet, half), exported)
    again = json.loads((exported / "report.json").read_text())
    assert review["reviewed"] == 5
    assert again["judgement"]["automatic_verdict_top1"] == before["judgement"]["verdict_top1"]
    assert [("human" in r) for r in again["per_class"]] == [True] * 5 + [False] * 5
    auto = [r["verdict_top1"] for r in before["per_class"]]
    assert [r["verdict_top1"] for r in again["per_class"]][5:] == auto[5:]


# ---------------------------------------------------------------------------------------------
# command line


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="invguard")
    sub = parser.add_subparsers(dest="command", required=True)
    add_review_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_cli_export_and_import(
    tmp_path: Path, digits: ImageDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_report(tmp_path / "run", digits)
    assert _cli(["review", "export", str(root), "--seed", "5", "--distractors", "2"]) == 0
    out = capsys.readouterr().out
    assert str(root / "review.html") in out
    assert KEY_NAME in out
    assert len(key_pairs(root)) == 3 * N
    labels = write_labels(tmp_path / "labels.json", sheet_of(root), perfect_labels(root, TRUTH))
    assert _cli(["review", "import", str(labels), "--key", str(root / KEY_NAME)]) == 0
    out = capsys.readouterr().out
    assert all(j in out for j in JUDGES)
    assert "kappa" in out
    assert "agreement" in out
    assert "automatic ->" in out
    assert f"{N} of {N} identities reviewed" in out
    with pytest.raises(SystemExit):
        _cli(["review", "export", str(root), "--distractors", "0"])
    write_labels(labels, sheet_of(root), {"abc": "same"})
    with pytest.raises(InvGuardError, match="unknown pair id"):
        _cli(["review", "import", str(labels), str(root)])


def test_main_cli_exit_codes(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from invguard.cli import build_parser, main

    commands = next(
        a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    if "review" not in commands:
        pytest.skip("invguard.cli does not register add_review_parser yet")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["review", "import", str(bad), str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("invguard: error: labels file")
    assert "\n" not in err
    good = write_labels(tmp_path / "l.json", sheet_of(exported), perfect_labels(exported, TRUTH))
    assert main(["review", "import", str(good), str(exported)]) == 0


# ---------------------------------------------------------------------------------------------
# the sheet in a browser


def test_sheet_in_headless_chromium(exported: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("INVGUARD_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (INVGUARD_REQUIRE_BROWSER) but not installed")
        pytest.skip("chromium not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        page = browser.new_page(accept_downloads=True)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((exported / "review.html").as_uri())
        page.wait_for_load_state("load")
        loaded = page.evaluate(
            "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
        )
        cards = page.locator("section.pair")
        ids = [cards.nth(i).get_attribute("data-pair") for i in range(4)]
        for i, label in enumerate(["same", "different", "unsure", "same"]):
            cards.nth(i).locator(f'button[data-label="{label}"]').click()
        cards.nth(3).locator('button[data-label="same"]').click()  # pressed again: cleared
        cards.nth(2).locator('button[data-label="different"]').click()  # changed
        page.fill("#reviewer", "  Grace  ")
        got = page.evaluate("window.invguardLabels()")
        progress = page.inner_text("#progress")
        pressed = cards.nth(1).locator('button[aria-pressed="true"]').inner_text()
        with page.expect_download() as info:
            page.click("#save")
        saved = Path(info.value.path()).read_text()
        browser.close()
    assert errors == []
    assert loaded == 4 * N
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert got == {
        "schema": LABELS_SCHEMA,
        "sheet": sheet_of(exported),
        "reviewer": "Grace",
        "labels": {ids[0]: "same", ids[1]: "different", ids[2]: "different"},
    }
    assert progress == f"3 of {2 * N} pairs labelled"
    assert pressed == "different"
    assert json.loads(saved) == got
    path = tmp_path / "downloaded.json"
    path.write_text(saved)
    review = import_labels(path, exported)
    assert review["reviewer"] == "Grace"
    assert review["pairs"]["labelled"] == 3
