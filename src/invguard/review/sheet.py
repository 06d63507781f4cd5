"""The blind review sheet: reconstructions beside candidate private images, and its answer key.

Every reconstruction is shown beside one private training image of its own identity and beside one
of each of ``distractors`` other identities; all pairs of all reconstructions are shuffled together
and carry opaque random ids. The HTML says nothing about the judges, the classes or which candidate
is the true one; that answer key goes to a separate file (:data:`KEY_NAME`) beside the report.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.data.base import ImageDataset
from invguard.errors import InvGuardError, check_int

REPORT_JSON = "report.json"
RECONSTRUCTIONS_NPZ = "reconstructions.npz"
SHEET_NAME = "review.html"
KEY_NAME = "review-key.json"
LABELS_SCHEMA = "invguard.review-labels/1"
KEY_SCHEMA = "invguard.review-key/1"
LABEL_VALUES = ("same", "different", "unsure")
DISPLAY_PIXELS = 128  # small images are upscaled (nearest neighbour) to about this many pixels


class ReviewError(InvGuardError):
    """A review sheet, answer key, labels file or report folder is missing or does not fit."""


@dataclass(frozen=True)
class Pair:
    """One card of the sheet: a reconstruction beside training image ``train_index``."""

    pair_id: str
    reconstruction: int
    shown_class: int
    true: bool
    train_index: int

    def key_entry(self) -> dict[str, Any]:
        return {
            "reconstruction": self.reconstruction,
            "class": self.shown_class,
            "true": self.true,
            "train_index": self.train_index,
        }


# ---------------------------------------------------------------------------------------------
# reading the report folder


def read_report(report_dir: str | Path) -> dict[str, Any]:
    """``report.json`` of a report folder as a dict (one-line :class:`ReviewError` otherwise)."""
    path = Path(report_dir) / REPORT_JSON
    if not path.is_file():
        raise ReviewError(
            f"no {REPORT_JSON} in {Path(report_dir)}: is it an InvGuard report folder?"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReviewError(f"{path} is not readable JSON: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise ReviewError(f"{path} must hold a JSON object, got {type(data).__name__}")
    rows = data.get("per_class")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ReviewError(f"{path} lacks 'per_class' (one object per reconstruction)")
    return data


def read_reconstructions(report_dir: str | Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``x`` ``(n, c, h, w)`` and ``classes`` ``(n,)`` from ``reconstructions.npz`` (no pickle)."""
    path = Path(report_dir) / RECONSTRUCTIONS_NPZ
    if not path.is_file():
        raise ReviewError(
            f"no {RECONSTRUCTIONS_NPZ} in {Path(report_dir)}: the run saved no images"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "classes") if k not in npz.files]
            if missing:
                raise ReviewError(f"{path} lacks the array '{missing[0]}' (needs x and classes)")
            x, classes = np.asarray(npz["x"]), np.asarray(npz["classes"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ReviewError(f"{path} is not a readable .npz file: {_one_line(exc)}") from None
    if x.ndim != 4 or classes.shape != (x.shape[0],):
        raise ReviewError(
            f"{path}: x must be (n, c, h, w) and classes (n,), got {x.shape} and {classes.shape}"
        )
    if not np.issubdtype(classes.dtype, np.integer):
        raise ReviewError(f"{path}: classes must be integers, got dtype {classes.dtype}")
    return np.clip(x.astype(np.float32), 0.0, 1.0), classes.astype(np.int64)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def resolve_dataset(
    report: Mapping[str, Any], dataset: ImageDataset | str | Path | None, image_hw: tuple[int, int]
) -> ImageDataset:
    """The private data set of a report: ``dataset`` (a data set or a path), else the built-in
    one named by ``report['dataset']['source']``."""
    from invguard.data import load_builtin, load_image_folder, load_npz_dataset

    if isinstance(dataset, ImageDataset):
        return dataset
    if dataset is not None:
        p = Path(dataset)
        if p.is_dir():
            return load_image_folder(p, image_size=(image_hw[1], image_hw[0]))
        if p.suffix.lower() == ".npz" or p.is_file():
            return load_npz_dataset(p)
        raise ReviewError(f"--data {p}: no such .npz file or image folder")
    info = report.get("dataset")
    source = info.get("source") if isinstance(info, dict) else None
    if not isinstance(source, str) or not source:
        raise ReviewError(
            "the report's data set is not a built-in one: pass --data PATH (the private training "
            "images: an .npz with x_train/y_train or an image folder)"
        )
    try:
        return load_builtin(source)
    except InvGuardError as exc:
        raise ReviewError(
            f"cannot load the report's data set {source!r} ({_one_line(exc)}): pass --data PATH"
        ) from None


def _check_fit(
    report: Mapping[str, Any],
    data: ImageDataset,
    x: NDArray[np.float32],
    classes: NDArray[np.int64],
) -> None:
    """Refuse a data set that cannot be the one the reconstructions were made from."""
    info = report.get("dataset")
    k = info.get("num_classes") if isinstance(info, dict) else None
    if isinstance(k, int) and k != data.num_classes:
        raise ReviewError(
            f"the report has {k} classes but the data set {data.name!r} has {data.num_classes}: "
            "pass the right --data"
        )
    if data.image_shape[1:] != tuple(x.shape[2:]):
        h, w = data.image_shape[1:]
        raise ReviewError(
            f"the data set {data.name!r} has {w}x{h} images but the reconstructions are "
            f"{x.shape[3]}x{x.shape[2]}: pass the right --data"
        )
    if classes.size and (int(classes.min()) < 0 or int(classes.max()) >= data.num_classes):
        raise ReviewError(f"reconstruction classes lie outside [0, {data.num_classes - 1}]")
    rows = report["per_class"]
    if len(rows) != len(classes) or any(
        r.get("class") != int(c) for r, c in zip(rows, classes, strict=True)
    ):
        raise ReviewError(
            f"{REPORT_JSON} per_class ({len(rows)} rows) does not match {RECONSTRUCTIONS_NPZ} "
            f"({len(classes)} reconstructions) class by class"
        )


# ---------------------------------------------------------------------------------------------
# the pairs


def make_pairs(
    classes: NDArray[np.int64], y_train: NDArray[np.int64], *, distractors: int, seed: int
) -> list[Pair]:
    """``distractors + 1`` pairs per reconstruction, all shuffled together, with random ids."""
    rng = np.random.default_rng(seed)
    by_class = {int(c): np.flatnonzero(y_train == c) for c in np.unique(y_train)}
    for c in np.unique(classes).tolist():
        if c not in by_class:
            raise ReviewError(f"class {c} has no private training image to show beside it")
    pairs: list[tuple[int, int, bool, int]] = []
    for i, c in enumerate(classes.tolist()):
        others = np.asarray(sorted(k for k in by_class if k != c), dtype=np.int64)
        if len(others) < distractors:
            raise ReviewError(
                f"--distractors {distractors} needs that many other identities with training "
                f"images, the data set has {len(others)}"
            )
        shown = [c, *rng.choice(others, size=distractors, replace=False).tolist()]
        for j, s in enumerate(shown):
            pairs.append((i, int(s), j == 0, int(rng.choice(by_class[int(s)]))))
    order = rng.permutation(len(pairs))
    ids: set[str] = set()
    out = []
    for k in order.tolist():
        pid = rng.bytes(6).hex()
        while pid in ids:
            pid = rng.bytes(6).hex()
        ids.add(pid)
        out.append(Pair(pid, *pairs[k]))
    return out


def sheet_id(recon_sha: str, dataset: ImageDataset, seed: int, distractors: int) -> str:
    """An opaque id of one sheet: the same reconstructions, data, seed and K give the same id."""
    text = f"{recon_sha}:{dataset.fingerprint()}:{seed}:{distractors}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_key(
    sheet: str,
    pairs: Sequence[Pair],
    *,
    seed: int,
    distractors: int,
    recon_sha: str,
    n: int,
    dataset: str,
) -> dict[str, Any]:
    """The answer key (JSON-ready): pair id -> reconstruction, class shown, true identity or not."""
    return {
        "schema": KEY_SCHEMA,
        "sheet": sheet,
        "seed": seed,
        "distractors": distractors,
        "dataset": dataset,
        "reconstructions": n,
        "reconstructions_sha256": recon_sha,
        "pairs": {p.pair_id: p.key_entry() for p in pairs},
    }


# ---------------------------------------------------------------------------------------------
# the HTML


def display_scale(h: int, w: int) -> int:
    """Integer nearest-neighbour upscale that brings an ``h`` x ``w`` image to about 128 pixels."""
    return max(1, DISPLAY_PIXELS // max(1, h, w))


def render_sheet(
    sheet: str,
    pairs: Sequence[Pair],
    reconstructions: NDArray[np.float32],
    x_train: NDArray[np.float32],
) -> str:
    """The self-contained HTML sheet: inline images, CSS and JS, no network, no answers."""
    import jinja2

    from invguard.report.images import data_uri, png_bytes

    h, w = reconstructions.shape[2:]
    scale = display_scale(int(h), int(w))
    recon_uri: dict[int, str] = {}
    train_uri: dict[int, str] = {}
    items = []
    for p in pairs:
        if p.reconstruction not in recon_uri:
            recon_uri[p.reconstruction] = data_uri(
                png_bytes(reconstructions[p.reconstruction], scale=scale)
            )
        if p.train_index not in train_uri:
            train_uri[p.train_index] = data_uri(png_bytes(x_train[p.train_index], scale=scale))
        items.append(
            {
                "id": p.pair_id,
                "left": recon_uri[p.reconstruction],
                "right": train_uri[p.train_index],
            }
        )
    meta = json.dumps({"schema": LABELS_SCHEMA, "sheet": sheet, "pairs": len(items)})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        sheet=sheet,
        items=items,
        width=int(w) * scale,
        height=int(h) * scale,
        meta=meta.replace("<", "\\u003c"),
        script=_SCRIPT,
    )


def export_sheet(
    report_dir: str | Path,
    *,
    out: str | Path | None = None,
    seed: int = 0,
    distractors: int = 1,
    dataset: ImageDataset | str | Path | None = None,
) -> tuple[Path, Path]:
    """Write the blind review sheet (default ``REPORT_DIR/review.html``) and its answer key
    (``REPORT_DIR/review-key.json``); returns both paths."""
    from invguard.report.io import write_atomic

    check_int("seed", seed, minimum=0)
    check_int("distractors", distractors, minimum=1)
    root = Path(report_dir)
    report = read_report(root)
    x, classes = read_reconstructions(root)
    if len(classes) == 0:
        raise ReviewError(f"{root / RECONSTRUCTIONS_NPZ} holds no reconstructions")
    data = resolve_dataset(report, dataset, (int(x.shape[2]), int(x.shape[3])))
    _check_fit(report, data, x, classes)
    html_path = Path(out) if out is not None else root / SHEET_NAME
    key_path = root / KEY_NAME
    protected = {(root / n).resolve() for n in (REPORT_JSON, RECONSTRUCTIONS_NPZ, KEY_NAME)}
    if html_path.resolve() in protected:
        raise ReviewError(f"-o {html_path} would overwrite a file of the report folder")
    pairs = make_pairs(classes, data.y_train, distractors=distractors, seed=seed)
    recon_sha = file_sha256(root / RECONSTRUCTIONS_NPZ)
    sid = sheet_id(recon_sha, data, seed, distractors)
    key = build_key(
        sid,
        pairs,
        seed=seed,
        distractors=distractors,
        recon_sha=recon_sha,
        n=len(classes),
        dataset=data.name,
    )
    html = render_sheet(sid, pairs, x, data.x_train)
    write_atomic(key_path, json.dumps(key, indent=2) + "\n", mode=0o600)
    write_atomic(html_path, html)
    return html_path, key_path


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>InvGuard review sheet {{ sheet }}</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #f4f4f6; }
header { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid #ccc;
  padding: .6em 1.2em; display: flex; flex-wrap: wrap; gap: .6em 1.4em; align-items: center; }
header h1 { font-size: 1.1em; margin: 0; }
header .help { flex-basis: 100%; margin: 0; color: #444; }
#progress { font-weight: 600; }
main { display: grid; gap: 1em; padding: 1em 1.2em;
  grid-template-columns: repeat(auto-fill, minmax({{ [2 * width + 60, 300] | max }}px, 1fr)); }
.pair { background: #fff; border: 2px solid #ddd; border-radius: 6px; padding: .6em; }
.pair.done { border-color: #8a8; }
.pair .num { color: #666; font-size: .85em; }
.images { display: flex; gap: 1em; justify-content: center; }
figure { margin: 0; text-align: center; }
figure img { image-rendering: pixelated; border: 1px solid #bbb; background: #000; }
figcaption { font-size: .8em; color: #555; }
.choices { display: flex; gap: .4em; justify-content: center; margin-top: .5em; }
button { font: inherit; padding: .3em .7em; border: 1px solid #888; border-radius: 4px;
  background: #f7f7f7; cursor: pointer; white-space: nowrap; }
button[aria-pressed="true"][data-label="same"] { background: #2e7d32; color: #fff; }
button[aria-pressed="true"][data-label="different"] { background: #c62828; color: #fff; }
button[aria-pressed="true"][data-label="unsure"] { background: #616161; color: #fff; }
#save { background: #1565c0; color: #fff; border-color: #1565c0; }
#status { color: #555; }
</style>
</head>
<body>
<header>
<h1>Human review</h1>
<p class="help">Each card shows an image an attack produced (left) beside a real photo (right).
Decide whether the two show <b>the same person</b>. Cards are in random order; decide each one on
its own. Click a pressed button again to clear it. Save often: the labels live only in this page
until you click <b>Save labels</b> and keep the downloaded file.</p>
<label>Reviewer <input id="reviewer" type="text" autocomplete="off" size="18"></label>
<span id="progress">0 of {{ items | length }} pairs labelled</span>
<button id="save" type="button">Save labels</button>
<label>Resume from a saved file
<input id="load" type="file" accept=".json,application/json"></label>
<span id="status" role="status"></span>
</header>
<main>
{% for it in items %}<section class="pair" data-pair="{{ it.id }}">
<div class="num">pair {{ loop.index }} of {{ items | length }}</div>
<div class="images">
<figure><img src="{{ it.left }}" width="{{ width }}" height="{{ height }}" alt="attack output">
<figcaption>attack output</figcaption></figure>
<figure><img src="{{ it.right }}" width="{{ width }}" height="{{ height }}" alt="real photo">
<figcaption>real photo</figcaption></figure>
</div>
<div class="choices" role="group" aria-label="same person?">
<button type="button" data-label="same" aria-pressed="false">same person</button>
<button type="button" data-label="different" aria-pressed="false">different</button>
<button type="button" data-label="unsure" aria-pressed="false">unsure</button>
</div>
</section>
{% endfor %}</main>
<script type="application/json" id="sheet-meta">{{ meta | safe }}</script>
<script>{{ script | safe }}</script>
</body>
</html>
"""

_SCRIPT = """
(function () {
  "use strict";
  var META = JSON.parse(document.getElementById("sheet-meta").textContent);
  var VALID = ["same", "different", "unsure"];
  var labels = {};
  var dirty = false;
  var sections = {};
  Array.prototype.forEach.call(document.querySelectorAll("section.pair"), function (s) {
    sections[s.getAttribute("data-pair")] = s;
  });
  var reviewer = document.getElementById("reviewer");
  var status = document.getElementById("status");

  function show(id) {
    var s = sections[id];
    Array.prototype.forEach.call(s.querySelectorAll("button[data-label]"), function (b) {
      b.setAttribute("aria-pressed", String(labels[id] === b.getAttribute("data-label")));
    });
    s.classList.toggle("done", labels.hasOwnProperty(id));
  }
  function progress() {
    var n = Object.keys(labels).length;
    document.getElementById("progress").textContent =
      n + " of " + META.pairs + " pairs labelled";
  }
  function current() {
    var copy = {};
    Object.keys(labels).forEach(function (k) { copy[k] = labels[k]; });
    return {schema: META.schema, sheet: META.sheet, reviewer: reviewer.value.trim(), labels: copy};
  }
  window.invguardLabels = current;

  document.querySelector("main").addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-label]");
    if (!b) { return; }
    var id = b.closest("section.pair").getAttribute("data-pair");
    var value = b.getAttribute("data-label");
    if (labels[id] === value) { delete labels[id]; } else { labels[id] = value; }
    dirty = true;
    show(id);
    progress();
  });
  reviewer.addEventListener("input", function () { dirty = true; });

  document.getElementById("save").addEventListener("click", function () {
    var body = JSON.stringify(current(), null, 2) + "\\n";
    var url = URL.createObjectURL(new Blob([body], {type: "application/json"}));
    var a = document.createElement("a");
    a.href = url;
    a.download = "review-labels-" + META.sheet + ".json";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
    dirty = false;
    status.textContent = "saved " + Object.keys(labels).length + " labels";
  });

  document.getElementById("load").addEventListener("change", function (ev) {
    var file = ev.target.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () {
      var data;
      try { data = JSON.parse(reader.result); } catch (e) {
        status.textContent = "not a labels file (not JSON)"; return;
      }
      if (!data || data.schema !== META.schema || data.sheet !== META.sheet ||
          typeof data.labels !== "object" || data.labels === null) {
        status.textContent = "that file is not a labels file of this sheet"; return;
      }
      var n = 0;
      Object.keys(data.labels).forEach(function (id) {
        if (sections.hasOwnProperty(id) && VALID.indexOf(data.labels[id]) >= 0) {
          labels[id] = data.labels[id]; show(id); n += 1;
        }
      });
      if (typeof data.reviewer === "string" && !reviewer.value) { reviewer.value = data.reviewer; }
      progress();
      status.textContent = "loaded " + n + " labels";
    };
    reader.readAsText(file);
  });

  window.addEventListener("beforeunload", function (ev) {
    if (dirty) { ev.preventDefault(); ev.returnValue = ""; }
  });
})();
"""
