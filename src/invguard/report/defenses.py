"""Render a defence evaluation: a text table, a plot of test accuracy against attack top-1 with
the Pareto front of each threat model, and a self-contained HTML page (JSON beside it)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from invguard.defenses.evaluation import DefenseEvaluation, leakage
from invguard.report.images import data_uri, png_bytes
from invguard.report.io import write_atomic
from invguard.report.templating import num, render

MARKERS = {"none": ("*", "#101828"), "training": ("o", "#175cd3"), "output": ("s", "#b54708")}


def _fmt(v: float | None, digits: int = 3) -> str:
    return num(v, digits)


def table_rows(ev: DefenseEvaluation) -> list[dict[str, Any]]:
    """One row per candidate with its accuracy, attack top-1s and drops against the undefended."""
    base = ev.baseline
    attacks = [a for a in base.attacks]
    out = []
    for r in ev.rows:
        threat = "white-box" if r.kind == "training" else "black-box"
        t = ev.threats.get(threat)
        pareto = sorted(k for k, th in ev.threats.items() if r.name in th.pareto)
        recommended = sorted(k for k in ev.threats if recommended_defence(ev, k) == r.name)
        acc_drop = (
            None
            if r.test_accuracy is None or base.test_accuracy is None
            else base.test_accuracy - r.test_accuracy
        )
        leak = leakage(r, t.attacks) if t is not None and r.kind != "none" else None
        base_leak = leakage(base, t.attacks) if t is not None else None
        out.append(
            {
                "name": r.name,
                "kind": r.kind,
                "test_accuracy": r.test_accuracy,
                "accuracy_drop": acc_drop,
                "attacks": {a: (r.attacks[a].top1 if a in r.attacks else None) for a in attacks},
                "knn": {
                    a: (r.attacks[a].knn_distance if a in r.attacks else None) for a in attacks
                },
                "leakage_drop": None if leak is None or base_leak is None else base_leak - leak,
                "pareto": pareto,
                "recommended": recommended,
                "error": r.error,
            }
        )
    return out


def render_text(ev: DefenseEvaluation) -> str:
    """A plain table for the terminal (and the README)."""
    attacks = list(ev.baseline.attacks)
    head = ["defence", "kind", "test acc"] + [f"{a} verdict" for a in attacks] + ["note"]
    lines = []
    for row in table_rows(ev):
        note = []
        if row["recommended"]:
            note.append("RECOMMENDED (" + ", ".join(row["recommended"]) + ")")
        if row["pareto"] and row["kind"] != "none":
            note.append("Pareto")
        if row["error"]:
            note.append("error: " + row["error"])
        lines.append(
            [row["name"], row["kind"], _fmt(row["test_accuracy"])]
            + [_fmt(row["attacks"][a]) for a in attacks]
            + ["; ".join(note)]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    out.append(f"chance top-1: {1.0 / ev.num_classes:.3f}")
    for t in ev.threats.values():
        out.append(f"[{t.threat}] {t.recommendation}")
    return "\n".join(out)


PLOT_MISSING = (
    "The accuracy-against-leakage plot needs matplotlib (pip install 'invguard[plot]'); "
    "the table above has the same numbers."
)


def plot_available() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def recommended_defence(ev: DefenseEvaluation, threat: str) -> str | None:
    """The defence ``threat`` recommends; None when it keeps the undefended model (the
    undefended model is never "recommended": only a defence can be)."""
    t = ev.threats.get(threat)
    if t is None or t.recommended is None:
        return None
    try:
        return None if ev.row(t.recommended).kind == "none" else t.recommended
    except KeyError:
        return None


Point = tuple[str, str, float, float]  # (names, kind, leakage, test accuracy)


def _points(ev: DefenseEvaluation, threat: str) -> list[Point]:
    """The measured candidates of ``threat``; rows at the same place share one point and label."""
    t = ev.threats[threat]
    merged: dict[tuple[float, float], list[tuple[str, str]]] = {}
    for name in t.candidates:
        r = ev.row(name)
        x, y = leakage(r, t.attacks), r.test_accuracy
        if x is not None and y is not None:
            merged.setdefault((round(x, 3), round(y, 3)), []).append((name, r.kind))
    out = []
    for (x, y), rows in merged.items():
        kinds = [k for _, k in rows]
        out.append((", ".join(n for n, _ in rows), "none" if "none" in kinds else kinds[0], x, y))
    return sorted(out, key=lambda p: (p[2], p[3]))


# Label positions tried around a point, in order: (dx, dy) in points and the text alignment.
_LABEL_SPOTS = (
    (7, 3, "left", "bottom"), (7, -3, "left", "top"), (-7, 3, "right", "bottom"),
    (-7, -3, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"),
    (12, 10, "left", "bottom"), (-12, 10, "right", "bottom"), (12, -10, "left", "top"),
    (-12, -10, "right", "top"),
)  # fmt: skip


def _label_text(names: str) -> str:
    """Rows merged into one point: one name per line when they would make a long label."""
    return names.replace(", ", ",\n") if len(names) > 28 else names


def _annotate(ax: Any, points: Sequence[Point], recommended: str | None = None) -> None:
    """Label each point beside it where the label overlaps no other label or point and stays
    inside the axes (the first such of :data:`_LABEL_SPOTS`, else the least bad)."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    scale = ax.figure.dpi / 72.0
    markers = [
        (*ax.transData.transform((x, y)), scale * (12 if recommended in n.split(", ") else 5))
        for n, _, x, y in points
    ]  # centre and clearance (pixels) of each marker, the recommended one's circle included
    placed: list[Any] = []
    for name, _, x, y in points:
        best: tuple[float, Any] | None = None
        for dx, dy, ha, va in _LABEL_SPOTS:
            t = ax.annotate(
                _label_text(name), (x, y), textcoords="offset points", xytext=(dx, dy),
                ha=ha, va=va, fontsize=7, color="#1d232b", zorder=5,
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75},
            )  # fmt: skip
            box = t.get_window_extent(renderer).expanded(1.06, 1.15)
            cost = 10.0 * sum(box.overlaps(o) for o in placed)
            cost += 3.0 * sum(
                max(box.x0 - mx, 0.0, mx - box.x1) ** 2 + max(box.y0 - my, 0.0, my - box.y1) ** 2
                < r * r
                for mx, my, r in markers
            )
            outside = max(0.0, frame.x0 - box.x0) + max(0.0, box.x1 - frame.x1)
            outside += max(0.0, frame.y0 - box.y0) + max(0.0, box.y1 - frame.y1)
            cost += 20.0 * (outside > 0) + outside / 100.0
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, t)
            else:
                t.remove()
            if cost == 0:
                break
        assert best is not None
        placed.append(best[1].get_window_extent(renderer))


def _y_limits(ev: DefenseEvaluation, points: Sequence[Point]) -> tuple[float, float]:
    ys = [p[3] for p in points]
    if ev.baseline.test_accuracy is not None:
        ys.append(ev.baseline.test_accuracy - ev.max_accuracy_drop)
    lo, hi = min(ys), max(ys)
    pad = max(hi - lo, 0.05) * 0.15
    return max(0.0, lo - pad), hi + pad


def _panel(ax: Any, ev: DefenseEvaluation, threat: str) -> None:
    t = ev.threats[threat]
    pts = _points(ev, threat)
    for _, kind, x, y in pts:
        marker, colour = MARKERS[kind]
        ax.scatter([x], [y], marker=marker, s=130 if kind == "none" else 60, c=colour, zorder=3)
    front = sorted(
        (p for p in pts if any(n in t.pareto for n in p[0].split(", "))), key=lambda p: p[2]
    )
    if len(front) > 1:
        ax.plot([p[2] for p in front], [p[3] for p in front], "--", c="#067647", lw=1.2, zorder=2)
    rec = recommended_defence(ev, threat)
    for name, _, x, y in pts:
        if rec is not None and rec in name.split(", "):
            ax.scatter([x], [y], s=420, facecolors="none", edgecolors="#b42318", lw=1.8, zorder=4)
    ax.axvline(1.0 / ev.num_classes, c="#98a2b3", lw=1, ls=":")
    if ev.baseline.test_accuracy is not None:
        ax.axhline(ev.baseline.test_accuracy - ev.max_accuracy_drop, c="#b54708", lw=1, ls=":")
    xlim = (-0.03, 1.03)
    ax.set_xlim(*xlim)
    if pts:
        ax.set_ylim(*_y_limits(ev, pts))
    ax.set_xlabel(f"attack verdict top-1 ({', '.join(t.attacks)})")
    ax.set_ylabel("target test accuracy")
    kind = "training-time defences" if t.threat == "white-box" else "output defences"
    ax.set_title(f"{t.threat}: {kind}", fontsize=10)
    ax.grid(alpha=0.3)


def _legend_handles(ev: DefenseEvaluation) -> list[Any]:
    from matplotlib.lines import Line2D

    kinds = {r.kind for r in ev.rows}
    names = {"none": "undefended", "training": "training defence", "output": "output defence"}
    handles: list[Any] = [
        Line2D([], [], ls="", marker=MARKERS[k][0], color=MARKERS[k][1], ms=8, label=names[k])
        for k in ("none", "training", "output")
        if k in kinds
    ]
    handles.append(Line2D([], [], ls="--", c="#067647", lw=1.2, label="Pareto front"))
    if any(recommended_defence(ev, k) for k in ev.threats):
        handles.append(
            Line2D([], [], ls="", marker="o", ms=14, mfc="none", mec="#b42318", mew=1.8,
                   label="recommended defence")
        )  # fmt: skip
    handles.append(Line2D([], [], c="#98a2b3", lw=1, ls=":", label="chance"))
    if ev.baseline.test_accuracy is not None:
        drop = ev.max_accuracy_drop * 100
        budget = f"accuracy budget (-{drop:.1f} pts)" if drop >= 0.05 else "accuracy budget (none)"
        handles.append(Line2D([], [], c="#b54708", lw=1, ls=":", label=budget))
    return handles


def plot_figure(ev: DefenseEvaluation) -> Any:
    """The matplotlib figure of :func:`render_plot` (Agg backend), laid out and labelled: the
    legend below the panels (it covers no point), every label inside its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threats = list(ev.threats)
    n = max(1, len(threats))
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 4.9), squeeze=False)
    for ax, key in zip(axes[0], threats, strict=False):
        _panel(ax, ev, key)
    handles = _legend_handles(ev)
    per_row = 4 if n == 1 else 7
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), per_row), fontsize=8,
        frameon=False,
    )  # fmt: skip
    fig.suptitle(
        f"Defences on {ev.dataset} ({ev.arch or 'target'}): leakage against accuracy", fontsize=11
    )
    rows = -(-len(handles) // per_row)
    fig.tight_layout(rect=(0.0, 0.035 + 0.045 * rows, 1.0, 0.95))
    for ax, key in zip(axes[0], threats, strict=False):
        # after the layout: labels are placed in its pixels
        _annotate(ax, _points(ev, key), recommended_defence(ev, key))
    return fig


def render_plot(ev: DefenseEvaluation) -> bytes:
    """PNG: test accuracy against the strongest fitting attack's top-1, one panel per threat model,
    Pareto front joined, the recommended defence circled (:func:`plot_figure`). Needs matplotlib
    (:func:`plot_available`)."""
    import matplotlib.pyplot as plt

    fig = plot_figure(ev)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.12)
    plt.close(fig)
    return buf.getvalue()


def render_html(ev: DefenseEvaluation, plot_png: bytes | None = None) -> str:
    """The self-contained page: recommendations, the measured table, the plot (rendered here when
    ``plot_png`` is None and matplotlib is installed, else a note) and the reconstructions."""
    galleries = {}
    for r in ev.rows:
        if r.gallery is not None:
            scale = max(1, 64 // max(1, int(r.gallery.shape[2])))
            galleries[r.name] = [data_uri(png_bytes(img, scale=scale)) for img in r.gallery]
    if plot_png is None and plot_available():
        plot_png = render_plot(ev)
    return render(
        "defenses.html",
        ev=ev.to_dict(),
        rows=table_rows(ev),
        attacks=list(ev.baseline.attacks),
        galleries=galleries,
        plot=None if plot_png is None else data_uri(plot_png),
        plot_note=PLOT_MISSING,
    )


def write_defense_report(ev: DefenseEvaluation, out: str | Path) -> dict[str, Path]:
    """Write ``defenses.html``, ``defenses.json`` and (with matplotlib) ``defenses.png`` into
    ``out``, each atomically."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    png = render_plot(ev) if plot_available() else None
    paths = {
        "json": write_atomic(folder / "defenses.json", json.dumps(ev.to_dict(), indent=2) + "\n")
    }
    if png is not None:
        paths["png"] = write_atomic(folder / "defenses.png", png)
    paths["html"] = write_atomic(folder / "defenses.html", render_html(ev, png))
    return paths


__all__ = [
    "PLOT_MISSING",
    "plot_available",
    "plot_figure",
    "recommended_defence",
    "render_html",
    "render_plot",
    "render_text",
    "table_rows",
    "write_defense_report",
]
