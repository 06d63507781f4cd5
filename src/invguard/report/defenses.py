"""Render a defence evaluation: a text table, a plot of test accuracy against attack top-1 with
the Pareto front of each threat model, and a self-contained HTML page (JSON beside it)."""

from __future__ import annotations

import io
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from invguard.defenses.evaluation import DefenseEvaluation, leakage
from invguard.report.images import data_uri, png_bytes
from invguard.report.io import write_atomic

MARKERS = {"none": ("*", "#101828"), "training": ("o", "#175cd3"), "output": ("s", "#b54708")}


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table_rows(ev: DefenseEvaluation) -> list[dict[str, Any]]:
    """One row per candidate with its accuracy, attack top-1s and drops against the undefended."""
    base = ev.baseline
    attacks = [a for a in base.attacks]
    out = []
    for r in ev.rows:
        threat = "white-box" if r.kind == "training" else "black-box"
        t = ev.threats.get(threat)
        pareto = sorted(k for k, th in ev.threats.items() if r.name in th.pareto)
        recommended = sorted(k for k, th in ev.threats.items() if th.recommended == r.name)
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


def render_plot(ev: DefenseEvaluation) -> bytes:
    """PNG: test accuracy against the strongest fitting attack's top-1, one panel per threat model,
    Pareto front joined, the recommendation circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threats = list(ev.threats.values())
    fig, axes = plt.subplots(1, max(1, len(threats)), figsize=(6.2 * max(1, len(threats)), 4.6))
    axes_list = list(np.atleast_1d(axes))
    for ax, t in zip(axes_list, threats, strict=False):
        pts = []
        for i, name in enumerate(t.candidates):
            r = ev.row(name)
            x, y = leakage(r, t.attacks), r.test_accuracy
            if x is None or y is None:
                continue
            pts.append((name, r.kind, x, y))
            marker, colour = MARKERS[r.kind]
            ax.scatter(
                [x], [y], marker=marker, s=120 if r.kind == "none" else 60, c=colour, zorder=3
            )
            ax.annotate(
                name, (x, y), textcoords="offset points", xytext=(6, 4 - 14 * (i % 2)), fontsize=7
            )
        front = sorted((p for p in pts if p[0] in t.pareto), key=lambda p: p[2])
        if len(front) > 1:
            ax.plot(
                [p[2] for p in front],
                [p[3] for p in front],
                "--",
                c="#067647",
                lw=1.2,
                label="Pareto front",
                zorder=2,
            )
        if t.recommended is not None:
            rec = next(p for p in pts if p[0] == t.recommended)
            ax.scatter(
                [rec[2]],
                [rec[3]],
                s=420,
                facecolors="none",
                edgecolors="#b42318",
                linewidths=1.8,
                label="recommended",
                zorder=4,
            )
        ax.axvline(1.0 / ev.num_classes, c="#98a2b3", lw=1, ls=":", label="chance")
        base_acc = ev.baseline.test_accuracy
        if base_acc is not None:
            ax.axhline(
                base_acc - ev.max_accuracy_drop,
                c="#b54708",
                lw=1,
                ls=":",
                label=f"accuracy budget (-{ev.max_accuracy_drop * 100:.1f} pts)",
            )
        ax.set_xlabel(f"attack verdict top-1 ({', '.join(t.attacks)})")
        ax.set_ylabel("target test accuracy")
        ax.set_title(
            f"{t.threat}: "
            + ("training-time defences" if t.threat == "white-box" else "output defences"),
            fontsize=10,
        )
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Defences on {ev.dataset} ({ev.arch or 'target'}): leakage against accuracy", fontsize=11
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def render_html(ev: DefenseEvaluation, plot_png: bytes | None = None) -> str:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("invguard.report").joinpath("templates", name).read_text("utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    galleries = {}
    for r in ev.rows:
        if r.gallery is not None:
            scale = max(1, 64 // max(1, int(r.gallery.shape[2])))
            galleries[r.name] = [data_uri(png_bytes(img, scale=scale)) for img in r.gallery]
    return env.get_template("defenses.html").render(
        ev=ev.to_dict(),
        rows=table_rows(ev),
        attacks=list(ev.baseline.attacks),
        galleries=galleries,
        plot=data_uri(plot_png if plot_png is not None else render_plot(ev)),
    )


def write_defense_report(ev: DefenseEvaluation, out: str | Path) -> dict[str, Path]:
    """Write ``defenses.html``, ``defenses.json`` and ``defenses.png`` into ``out`` (each atomically)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    png = render_plot(ev)
    return {
        "json": write_atomic(folder / "defenses.json", json.dumps(ev.to_dict(), indent=2) + "\n"),
        "png": write_atomic(folder / "defenses.png", png),
        "html": write_atomic(folder / "defenses.html", render_html(ev, png)),
    }


__all__ = ["render_html", "render_plot", "render_text", "table_rows", "write_defense_report"]
