"""Screenshots of InvGuard's HTML reports in headless Chromium (offline), to look at them.

For each page: the whole page (``<name>.png``), and the first click-to-enlarge figure opened
(``<name>-zoom.png``, its ``:target`` lightbox). Also checks what a reader's browser would: every
image loads, no console error, no request leaves the page. Chromium: Debian's ``chromium``
(``apt-get install chromium``) or ``--chromium PATH``.

    .venv/bin/python benchmarks/screenshot_reports.py out/assessment.html rep/report.html \\
        --defences-sample /tmp/shots/defences --out /tmp/shots

``--defences-sample DIR`` first writes a defence report from the measured numbers in the README
(30 faces, MLP: white-box training defences, black-box output defences) into DIR and shoots it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from invguard.defenses.evaluation import AttackScore, DefenseEvaluation, DefenseRow, compare
from invguard.report.defenses import write_defense_report

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


def sample_defences() -> DefenseEvaluation:
    """The README's measured rows (MLP on 30 AT&T identities, seed 0) as an evaluation."""

    def row(name: str, kind: str, acc: float, **top1: float) -> DefenseRow:
        scores = {a: AttackScore(a, v, v, 40.0 + 60 * v, 20000, 1.0) for a, v in top1.items()}
        return DefenseRow(name, kind, name, {}, name, acc, scores)

    rows = [
        row("none", "none", 0.944, miface=0.900, **{"miface-zo": 0.333, "learned": 0.2, "brep": 0.267}),
        row("label-smoothing(alpha=-2.0)", "training", 0.911, miface=0.333),
        row("dp-sgd(epsilon=8.0)", "training", 0.422, miface=0.033),
        row("bido(lambda_x=1, lambda_y=1)", "training", 0.978, miface=0.067),
        row("mid(beta=0.001)", "training", 0.956, miface=0.967),
        row("round(decimals=1)", "output", 0.944, **{"miface-zo": 0.033, "learned": 0.2, "brep": 0.267}),
        row("top_k(k=1)", "output", 0.944, **{"miface-zo": 0.033, "learned": 0.067, "brep": 0.267}),
        row("noise(sigma=0.05)", "output", 0.944, **{"miface-zo": 0.033, "learned": 0.133, "brep": 0.267}),
        row("label_only", "output", 0.944, brep=0.267),
    ]  # fmt: skip
    threats = {
        k: t
        for k, t in (
            ("white-box", compare("white-box", rows, ["miface"], 0.03)),
            ("black-box", compare("black-box", rows, ["miface-zo", "learned", "brep"], 0.03)),
        )
        if t is not None
    }
    return DefenseEvaluation("att-faces (30 identities)", "mlp", 30, 0.03, rows, threats, 0.0)


def _watch(page: Any) -> tuple[list[str], list[str]]:
    """Collect the page's console errors and uncaught exceptions, and every URL it requests."""
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda x: errors.append(str(x)))
    page.on("request", lambda r: requests.append(r.url))
    return errors, requests


def shoot(pages: list[Path], out: Path, chromium: str) -> int:
    """Screenshot each page and its first lightbox; print what a browser saw; 1 on a problem."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    problems = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        for page_path in pages:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            errors, requests = _watch(page)
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("document.images.length")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth)).length"
            )
            zooms = page.evaluate(
                "Array.from(document.querySelectorAll('.zoom')).map(z => [z.id, z.className])"
            )
            name = page_path.stem if page_path.stem != "report" else page_path.parent.name
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            kinds: dict[str, str] = {}
            for zid, cls in zooms:  # the first lightbox of each kind (chart, pair, plot, strip)
                kinds.setdefault(cls.replace("hit", "").strip(), zid)
            for i, zid in enumerate(kinds.values()):
                page.goto(page_path.resolve().as_uri() + "#" + zid)
                page.screenshot(path=str(out / f"{name}-zoom{i + 1}.png"))
            page.goto(page_path.resolve().as_uri() + "#_")  # closed again: nothing targeted
            if page.evaluate("document.querySelectorAll('.zoom:target').length"):
                errors.append("a lightbox stays open after closing")
            external = [u for u in requests if not u.startswith(("file:", "data:"))]
            print(
                f"{page_path}: {images} images ({broken} broken), {len(zooms)} enlargeable, "
                f"{len(errors)} console errors, {len(external)} external requests"
            )
            for e in errors + external:
                print("  ", e)
            problems += broken + len(errors) + len(external)
            page.close()
        browser.close()
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pages", nargs="*", type=Path, help="HTML reports to shoot")
    ap.add_argument("--out", type=Path, default=Path("/tmp/shots"), help="PNG folder (/tmp/shots)")
    ap.add_argument("--defences-sample", type=Path, help="write the sample defence report here")
    ap.add_argument(
        "--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser")
    )
    args = ap.parse_args(argv)
    if not args.chromium:
        print(
            "no chromium found: apt-get install chromium, or pass --chromium PATH", file=sys.stderr
        )
        return 2
    pages = list(args.pages)
    if args.defences_sample is not None:
        pages.append(write_defense_report(sample_defences(), args.defences_sample)["html"])
    if not pages:
        ap.error("give HTML pages to shoot, or --defences-sample DIR")
    return shoot(pages, args.out, args.chromium)


if __name__ == "__main__":
    raise SystemExit(main())
