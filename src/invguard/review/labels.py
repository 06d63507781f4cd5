"""Human labels from a review sheet: validate them, combine them per identity, update the report.

Per reconstruction, the human decision is 1 (the identity is reconstructed) when its true pair is
marked "same" and every distractor "different"; 0 when the true pair is marked "different" or a
distractor "same"; -1 (not reviewed) when any of its pairs is unlabelled or "unsure". The decision
joins the report as the highest-ranked judge: where a person decided, that is the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.review.sheet import (
    KEY_NAME,
    KEY_SCHEMA,
    LABEL_VALUES,
    LABELS_SCHEMA,
    RECONSTRUCTIONS_NPZ,
    REPORT_JSON,
    ReviewError,
    file_sha256,
    read_report,
)

NOT_REVIEWED = -1


@dataclass(frozen=True)
class ReviewKey:
    """A sheet's answer key: pair id -> (reconstruction index, class shown, true identity)."""

    sheet: str
    reconstructions: int
    pairs: dict[str, tuple[int, int, bool]]
    reconstructions_sha256: str | None = None


@dataclass(frozen=True)
class Labels:
    """A validated labels file."""

    sheet: str
    reviewer: str
    labels: dict[str, str]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise ReviewError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text("utf-8"))
    except UnicodeDecodeError:
        raise ReviewError(f"{what} {path} is not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ReviewError(
            f"{what} {path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except OSError as exc:
        raise ReviewError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_key(path: str | Path) -> ReviewKey:
    """Read and check a ``review-key.json``."""
    p = Path(path)
    if not p.is_file():
        raise ReviewError(
            f"no review key at {p}: run 'invguard review export' first, or pass --key FILE"
        )
    data = _read_json(p, "review key")
    if not isinstance(data, dict) or data.get("schema") != KEY_SCHEMA:
        raise ReviewError(f"{p} is not a review key (schema {KEY_SCHEMA} expected)")
    sheet, n, raw = data.get("sheet"), data.get("reconstructions"), data.get("pairs")
    if not isinstance(sheet, str) or not isinstance(n, int) or not isinstance(raw, dict):
        raise ReviewError(f"review key {p} lacks 'sheet', 'reconstructions' or 'pairs'")
    pairs: dict[str, tuple[int, int, bool]] = {}
    for pid, e in raw.items():
        ok = isinstance(e, dict) and isinstance(e.get("true"), bool)
        idx, cls = (e.get("reconstruction"), e.get("class")) if ok else (None, None)
        if not (isinstance(idx, int) and isinstance(cls, int) and 0 <= idx < n):
            raise ReviewError(f"review key {p}: pair {_short(pid)} is malformed")
        pairs[pid] = (idx, cls, bool(e["true"]))
    trues = np.bincount([i for i, _, t in pairs.values() if t], minlength=n)
    if n < 1 or len(trues) != n or not (trues == 1).all():
        raise ReviewError(f"review key {p}: every reconstruction needs exactly one true pair")
    sha = data.get("reconstructions_sha256")
    return ReviewKey(sheet, n, pairs, sha if isinstance(sha, str) else None)


def read_labels(path: str | Path, key: ReviewKey) -> Labels:
    """Read a labels file saved by the sheet and check it against ``key``."""
    p = Path(path)
    data = _read_json(p, "labels file")
    if not isinstance(data, dict):
        raise ReviewError(f"labels file {p} must hold a JSON object, got {type(data).__name__}")
    if data.get("schema") != LABELS_SCHEMA:
        raise ReviewError(
            f"labels file {p} has schema {_short(data.get('schema'))}, expected {LABELS_SCHEMA!r}"
        )
    if data.get("sheet") != key.sheet:
        raise ReviewError(
            f"labels file {p} is for sheet {_short(data.get('sheet'))} but the review key is for "
            f"sheet {key.sheet!r}: import it with the key of its own export (--key)"
        )
    reviewer = data.get("reviewer", "")
    if not isinstance(reviewer, str):
        raise ReviewError(f"labels file {p}: 'reviewer' must be text, got {_short(reviewer)}")
    labels = data.get("labels")
    if not isinstance(labels, dict):
        raise ReviewError(f"labels file {p}: 'labels' must be an object of pair id -> label")
    for pid, value in labels.items():
        if pid not in key.pairs:
            raise ReviewError(f"labels file {p}: unknown pair id {_short(pid)} (not on this sheet)")
        if value not in LABEL_VALUES:
            raise ReviewError(
                f"labels file {p}: pair {_short(pid)} has label {_short(value)}, "
                f"expected one of {', '.join(LABEL_VALUES)}"
            )
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in reviewer).split())
    return Labels(key.sheet, name[:200], dict(labels))


def human_decisions(key: ReviewKey, labels: Mapping[str, str]) -> NDArray[np.int8]:
    """Per reconstruction: 1 same person, 0 different, -1 not reviewed (see the module doc)."""
    true_same = np.zeros(key.reconstructions, dtype=bool)
    any_wrong = np.zeros(key.reconstructions, dtype=bool)  # true "different" or distractor "same"
    incomplete = np.zeros(key.reconstructions, dtype=bool)  # a pair unlabelled or unsure
    for pid, (i, _, true) in key.pairs.items():
        value = labels.get(pid)
        if value not in ("same", "different"):
            incomplete[i] = True
        elif true:
            true_same[i] = value == "same"
            any_wrong[i] |= value == "different"
        else:
            any_wrong[i] |= value == "same"
    out = np.full(key.reconstructions, NOT_REVIEWED, dtype=np.int8)
    out[true_same & ~any_wrong & ~incomplete] = 1
    out[any_wrong] = 0
    return out


def pair_counts(key: ReviewKey, labels: Mapping[str, str]) -> dict[str, int]:
    """How the reviewer labelled the pairs (true pairs and distractors apart)."""
    out = {"total": len(key.pairs), "labelled": 0, "same": 0, "different": 0, "unsure": 0}
    true_same = distractor_same = 0
    for pid, (_, _, true) in key.pairs.items():
        value = labels.get(pid)
        if value is None:
            continue
        out["labelled"] += 1
        out[value] += 1
        true_same += int(true and value == "same")
        distractor_same += int(not true and value == "same")
    out["missing"] = out["total"] - out["labelled"]
    out["true_marked_same"] = true_same
    out["distractors_marked_same"] = distractor_same
    return out


def judge_hits(report: Mapping[str, Any], *, top: int = 1) -> dict[str, NDArray[np.bool_]]:
    """Each automatic judge's hit vector from the report's per_class ranks (``rank < top``)."""
    rows = report["per_class"]
    names: list[str] = []
    for row in rows:
        judges = row.get("judges")
        if not isinstance(judges, dict):
            raise ReviewError(f"{REPORT_JSON}: a per_class row has no 'judges' (judge votes)")
        names.extend(n for n in judges if n not in names)
    hits: dict[str, NDArray[np.bool_]] = {}
    for name in names:
        ranks = []
        for i, row in enumerate(rows):
            vote = row["judges"].get(name)
            rank = vote.get("rank") if isinstance(vote, dict) else None
            if not isinstance(rank, int):
                raise ReviewError(f"{REPORT_JSON}: per_class row {i} lacks judge {name!r}'s rank")
            ranks.append(rank)
        hits[name] = np.asarray(ranks, dtype=np.int64) < top
    return hits


def agreement_stats(
    human: NDArray[np.int8], hits: Mapping[str, NDArray[np.bool_]]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Cohen's kappa and raw agreement of the human decision with each judge's top-1 hit,
    over the reviewed identities only."""
    from invguard.judges.panel import kappa

    mask = human >= 0
    decided = human[mask] == 1
    kappas: dict[str, float | None] = {}
    agree: dict[str, float | None] = {}
    for name, h in hits.items():
        kappas[name] = kappa(decided, h[mask])
        agree[name] = float((decided == h[mask]).mean()) if mask.any() else None
    return kappas, agree


def _check_report_fits(report: Mapping[str, Any], key: ReviewKey) -> None:
    rows = report["per_class"]
    if len(rows) != key.reconstructions:
        raise ReviewError(
            f"the review key is for {key.reconstructions} reconstructions but {REPORT_JSON} has "
            f"{len(rows)} per_class rows: it belongs to another run"
        )
    for i, c, true in key.pairs.values():
        if true and rows[i].get("class") != c:
            raise ReviewError(
                f"the review key does not match {REPORT_JSON} (row {i} is class "
                f"{_short(rows[i].get('class'))}, the key says {c}): it belongs to another run"
            )


def _voters(judgement: Mapping[str, Any], hits: Mapping[str, NDArray[np.bool_]]) -> list[str]:
    voters = judgement.get("voters")
    if not isinstance(voters, list) or not voters:
        raise ReviewError(f"{REPORT_JSON}: judgement.voters lists no voting judge")
    unknown = [v for v in voters if v not in hits]
    if unknown:
        raise ReviewError(
            f"{REPORT_JSON}: voting judge {_short(unknown[0])} has no per_class votes"
        )
    return [str(v) for v in voters]


def _keep_automatic(judgement: dict[str, Any], name: str, fallback: float) -> float:
    """The automatic verdict ``name`` from before any review: stored once, then kept."""
    stored = judgement.get(f"automatic_{name}")
    if not isinstance(stored, int | float):
        stored = judgement.get(name)
        judgement[f"automatic_{name}"] = (
            float(stored) if isinstance(stored, int | float) else fallback
        )
    return float(judgement[f"automatic_{name}"])


def _update_judgement(
    judgement: dict[str, Any],
    human: NDArray[np.int8],
    verdicts: tuple[NDArray[np.bool_], NDArray[np.bool_]],
    stats: tuple[dict[str, float | None], dict[str, float | None]],
) -> None:
    from invguard.metrics.intervals import wilson_interval  # invguard.metrics loads torch

    new1, new5 = verdicts
    kappas, agree = stats
    judgement["verdict_top1"], judgement["verdict_top5"] = float(new1.mean()), float(new5.mean())
    if "identities_reconstructed" in judgement:
        judgement["identities_reconstructed"] = int(new1.sum())
        judgement["verdict_top1_interval"] = list(wilson_interval(int(new1.sum()), len(new1)))
    n = int((human >= 0).sum())
    judgement["human"] = n
    table = judgement.get("agreement")
    if isinstance(table, list):  # the pairwise table as the panel writes it, human rows replaced
        rows = [
            a for a in table if not (isinstance(a, dict) and "human" in (a.get("a"), a.get("b")))
        ]
        rows += [
            {"a": j, "b": "human", "n": n, "agreement": agree[j], "kappa": kappas[j]}
            for j in kappas
        ]
        judgement["agreement"] = rows


def apply_review(
    report: dict[str, Any], key: ReviewKey, labels: Labels
) -> tuple[dict[str, Any], dict[str, float]]:
    """Add the human review to ``report`` in place; return ``human_review`` and the top-1
    verdict rates before (automatic) and after the review."""
    from invguard.judges.panel import verdict

    _check_report_fits(report, key)
    judgement = report.get("judgement")
    if not isinstance(judgement, dict):
        raise ReviewError(f"{REPORT_JSON} has no 'judgement': the run was not judged")
    hits1, hits5 = judge_hits(report, top=1), judge_hits(report, top=_top5(report))
    voters = _voters(judgement, hits1)
    human = human_decisions(key, labels.labels)
    kappas, agree = agreement_stats(human, hits1)
    new1, new5 = verdict(hits1, voters, human=human), verdict(hits5, voters, human=human)
    before = _keep_automatic(judgement, "verdict_top1", float(verdict(hits1, voters).mean()))
    _keep_automatic(judgement, "verdict_top5", float(verdict(hits5, voters).mean()))
    for i, row in enumerate(report["per_class"]):
        row.pop("human", None)
        if human[i] >= 0:
            row["human"] = "same" if human[i] == 1 else "different"
        row["verdict_top1"], row["verdict_top5"] = bool(new1[i]), bool(new5[i])
    _update_judgement(judgement, human, (new1, new5), (kappas, agree))
    review: dict[str, Any] = {
        "reviewer": labels.reviewer,
        "sheet": labels.sheet,
        "reviewed": int((human >= 0).sum()),
        "reconstructed": int((human == 1).sum()),
        "identities": key.reconstructions,
        "pairs": pair_counts(key, labels.labels),
        "kappa": kappas,
        "agreement": agree,
        "automatic_verdict_top1": before,
        "verdict_top1": float(new1.mean()),
        "rule": "a reconstruction is judged the same person when its true pair is marked same and "
        "every distractor different; different when the true pair is marked different or a "
        "distractor same; otherwise not reviewed. Where reviewed, the human label is the verdict",
    }
    report["human_review"] = review
    return review, {"before": before, "after": float(new1.mean())}


def _top5(report: Mapping[str, Any]) -> int:
    info = report.get("dataset")
    k = info.get("num_classes") if isinstance(info, dict) else None
    return min(5, k) if isinstance(k, int) and k > 0 else 5


def _check_reconstructions(report_dir: Path, key: ReviewKey) -> None:
    npz = report_dir / RECONSTRUCTIONS_NPZ
    sha = key.reconstructions_sha256
    if sha and npz.is_file() and file_sha256(npz) != sha:
        raise ReviewError(
            f"the review key was made for other reconstructions than {npz}: it belongs to "
            "another run (export the sheet again)"
        )


def import_labels(
    labels_path: str | Path, report_dir: str | Path, *, key: str | Path | None = None
) -> dict[str, Any]:
    """Validate a labels file, add it to ``REPORT_DIR/report.json`` (atomically) as the
    highest-ranked judge, and return the ``human_review`` section written."""
    review, _ = import_review(labels_path, report_dir, key=key)
    return review


def import_review(
    labels_path: str | Path, report_dir: str | Path, *, key: str | Path | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """:func:`import_labels`, also returning the top-1 verdict before and after."""
    from invguard.report.io import write_atomic

    root = Path(report_dir)
    the_key = read_key(Path(key) if key is not None else root / KEY_NAME)
    labels = read_labels(labels_path, the_key)
    report = read_report(root)
    _check_reconstructions(root, the_key)
    review, verdicts = apply_review(report, the_key, labels)
    write_atomic(root / REPORT_JSON, json.dumps(report, indent=2) + "\n")
    return review, verdicts
