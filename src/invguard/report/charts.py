"""Charts as hand-written inline SVG: no plotting dependency, self-contained, sharp at any zoom.

Two kinds: a horizontal bar chart of accuracies against reference lines (an attack's accuracy per
judge against chance, with the calibration rows; an attribute attack against its baselines), and
the risk score of a system over past runs, drawn over the risk-level bands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
PALETTE = ("#175cd3", "#b54708", "#067647", "#7a5af8", "#c11574", "#0e7090", "#667085")
VERDICT_COLOUR = "#101828"
MUTED = "#5b6673"
GRID = "#e4e7ec"
# Risk levels by score (invguard.assess.findings.risk_level; tests check they agree): lowest first.
RISK_BANDS: tuple[tuple[str, float, str], ...] = (
    ("low", 0.0, "#ecfdf3"),
    ("medium", 0.25, "#fef0c7"),
    ("high", 0.5, "#fee4e2"),
    ("critical", 0.75, "#fbd5da"),
)

_PAD = 12
_TITLE_H = 22
_ROW_H = 16
_BAR_H = 11
_BAR_GAP = 2
_GROUP_GAP = 10


@dataclass(frozen=True)
class Bar:
    """One bar: its series (a legend entry) and value in [0, 1] (None: not measured)."""

    series: str
    value: float | None


@dataclass(frozen=True)
class Group:
    """Bars drawn together under one label (an image set, an attack)."""

    label: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class RefLine:
    """A vertical reference line (chance, a baseline) with its label above the plot."""

    label: str
    value: float
    colour: str = "#b42318"
    dash: str = "5 3"


@dataclass(frozen=True)
class TrendPoint:
    """One run of a risk trend: its axis label, score, tooltip, and whether it is this run."""

    label: str
    value: float
    note: str = ""
    current: bool = False


def _text_w(text: str, size: float) -> float:
    """Rough rendered width of ``text`` at ``size`` px in a sans-serif face."""
    return len(text) * size * 0.6


def _t(
    x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", fill: str = MUTED,
    weight: str = "normal", halo: bool = False,
) -> str:  # fmt: skip
    """A text element; ``halo`` draws a white outline under it, so lines do not cross it."""
    ring = ' stroke="#fff" stroke-width="3" paint-order="stroke"' if halo else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{fill}" font-weight="{weight}"{ring}>{escape(text)}</text>'
    )


def _wrap(text: str, width: float, size: int, lines: int = 2) -> list[str]:
    """``text`` broken at spaces into at most ``lines`` lines of ``width`` px (the last one cut
    with an ellipsis when it still does not fit)."""
    per_line = max(4, int(width / (size * 0.6)))
    out: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if len(trial) <= per_line or not current:
            current = trial
        else:
            out.append(current)
            current = word
    out.append(current)
    if len(out) > lines:
        out = [*out[: lines - 1], " ".join(out[lines - 1 :])]
    return [x if len(x) <= per_line else x[: per_line - 1] + "\u2026" for x in out]


def _label(x: float, y: float, text: str, width: float, size: int = 12) -> str:
    """A right-aligned group label centred on ``y``, wrapped onto two lines when long."""
    rows = _wrap(text, width, size)
    y0 = y + 4 - (len(rows) - 1) * (size + 1) / 2
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{y0 + i * (size + 1):.1f}">{escape(r)}</tspan>'
        for i, r in enumerate(rows)
    )
    return (
        f'<text font-size="{size}" text-anchor="end" fill="#1d232b"><title>{escape(text)}</title>'
        f"{spans}</text>"
    )


def _svg(width: float, height: float, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {width:.0f} '
        f'{height:.0f}" width="{width:.0f}" height="{height:.0f}" role="img" '
        f'aria-label="{escape(label)}" font-family="{escape(FONT)}">'
        f"<title>{escape(label)}</title>"
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#fff"/>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _legend(
    entries: Sequence[tuple[str, str]], x0: float, y0: float, right: float
) -> tuple[list[str], float]:
    """Swatches and names, wrapped to ``right``; returns the elements and the height used."""
    out: list[str] = []
    x, y = x0, y0
    for name, colour in entries:
        w = 16 + _text_w(name, 11) + 14
        if x + w > right and x > x0:
            x, y = x0, y + _ROW_H
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        out.append(_t(x + 14, y, name, fill="#1d232b"))
        x += w
    return out, (y - y0) + _ROW_H


def _ref_rows(lines: Sequence[RefLine], scale: float, left: float) -> list[int]:
    """A label row for each reference line, so that no two labels overlap."""
    placed: list[tuple[int, float, float]] = []
    rows: list[int] = []
    for line in lines:
        x, half = left + line.value * scale, _text_w(line.label, 10) / 2 + 6
        row = 0
        while any(r == row and abs(x - px) < half + ph for r, px, ph in placed):
            row += 1
        placed.append((row, x, half))
        rows.append(row)
    return rows


def _axis(left: float, right: float, top: float, bottom: float, label: str) -> list[str]:
    out = []
    for i in range(6):
        v = i / 5
        x = left + v * (right - left)
        out.append(
            f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{GRID}"/>'
        )
        out.append(_t(x, bottom + 14, f"{v:.1f}", anchor="middle"))
    out.append(
        f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
        f'stroke="{MUTED}"/>'
    )
    out.append(_t((left + right) / 2, bottom + 30, label, anchor="middle"))
    return out


def _bar(g: Bar, x0: float, y: float, scale: float, right: float, colour: str) -> tuple[str, str]:
    """The bar and its value label (drawn later, above the reference lines)."""
    if g.value is None:
        return "", _t(x0 + 4, y + _BAR_H - 2, f"{g.series}: not measured", size=10, halo=True)
    v = min(1.0, max(0.0, float(g.value)))
    w = max(1.0, v * scale)
    value = f"{float(g.value):.3f}"
    rect = (
        f'<rect class="bar" x="{x0:.1f}" y="{y:.1f}" width="{w:.1f}" height="{_BAR_H}" '
        f'fill="{colour}" data-series="{escape(g.series)}" data-value="{value}">'
        f"<title>{escape(g.series)}: {value}</title></rect>"
    )
    if x0 + w + 4 + _text_w(value, 10) > right:
        return rect, _t(x0 + w - 4, y + _BAR_H - 2, value, size=10, anchor="end", fill="#fff")
    return rect, _t(x0 + w + 4, y + _BAR_H - 2, value, size=10, fill="#1d232b", halo=True)


def bar_chart(
    groups: Sequence[Group],
    *,
    series: Mapping[str, str],
    lines: Sequence[RefLine] = (),
    title: str,
    x_label: str,
    width: int = 720,
) -> Markup:
    """Horizontal bars in [0, 1], one group per label, one colour per series (``series``: name
    to colour, in legend order), the reference ``lines`` across all groups."""
    label_w = min(220.0, max(90.0, max((_text_w(g.label, 12) for g in groups), default=0) + 14))
    left, right = _PAD + label_w, width - _PAD - 16
    scale = right - left
    body = [_t(_PAD, _PAD + 14, title, size=14, fill="#1d232b", weight="600")]
    legend, legend_h = _legend(list(series.items()), _PAD, _PAD + _TITLE_H + 10, right)
    body += legend
    rows = _ref_rows(lines, scale, left)
    ref_top = _PAD + _TITLE_H + legend_h + 6
    top = ref_top + (max(rows, default=-1) + 1) * 14 + 6
    y = top + 4
    spans = []
    for g in groups:
        bars_h = max(1, len(g.bars)) * (_BAR_H + _BAR_GAP) - _BAR_GAP
        h = max(float(bars_h), len(_wrap(g.label, label_w - 14, 12)) * 13.0)
        spans.append((g, y, h))
        y += h + _GROUP_GAP
    bottom = y - _GROUP_GAP + 6
    for i, (_, gy, h) in enumerate(spans):
        if i % 2:
            body.append(
                f'<rect x="{left:.1f}" y="{gy - 4:.1f}" width="{scale:.1f}" height="{h + 8:.1f}" '
                f'fill="#f6f7f9"/>'
            )
    body += _axis(left, right, top, bottom, x_label)
    labels = []
    for g, gy, h in spans:
        body.append(_label(left - 8, gy + h / 2, g.label, label_w - 14))
        for k, b in enumerate(g.bars):
            colour = series.get(b.series, PALETTE[-1])
            rect, text = _bar(b, left, gy + k * (_BAR_H + _BAR_GAP), scale, right, colour)
            body.append(rect)
            labels.append(text)
    for line, row in zip(lines, rows, strict=True):
        x = left + min(1.0, max(0.0, line.value)) * scale
        half = _text_w(line.label, 10) / 2
        tx = min(max(x, left + half), width - _PAD - half)
        ty = ref_top + row * 14 + 10
        body.append(
            f'<line class="ref" x1="{x:.1f}" y1="{ty + 3:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
            f'stroke="{line.colour}" stroke-width="1.5" stroke-dasharray="{line.dash}"/>'
        )
        body.append(_t(tx, ty, line.label, size=10, anchor="middle", fill=line.colour))
    body += labels
    return _svg(width, bottom + 40, title, body)


def _y(v: float, top: float, bottom: float) -> float:
    return bottom - min(1.0, max(0.0, v)) * (bottom - top)


def _bands(left: float, right: float, top: float, bottom: float) -> list[str]:
    out = []
    bounds = [b[1] for b in RISK_BANDS[1:]] + [1.0]
    for (name, lo, colour), hi in zip(RISK_BANDS, bounds, strict=True):
        y_hi, y_lo = _y(hi, top, bottom), _y(lo, top, bottom)
        out.append(
            f'<rect x="{left:.1f}" y="{y_hi:.1f}" width="{right - left:.1f}" '
            f'height="{y_lo - y_hi:.1f}" fill="{colour}"/>'
        )
        out.append(_t(right + 6, (y_hi + y_lo) / 2 + 4, name, size=10))
        out.append(_t(left - 6, y_lo + 4, f"{lo:.2f}", size=10, anchor="end"))
    out.append(_t(left - 6, top + 4, "1.00", size=10, anchor="end"))
    return out


def risk_trend_chart(points: Sequence[TrendPoint], *, title: str, width: int = 720) -> Markup:
    """A system's risk score over runs (oldest first) over the risk-level bands; the current run
    drawn larger. Every point carries its run in a tooltip."""
    left, right = _PAD + 40.0, width - _PAD - 52.0
    top, bottom = _PAD + _TITLE_H + 8.0, _PAD + _TITLE_H + 8.0 + 170.0
    body = [_t(_PAD, _PAD + 14, title, size=14, fill="#1d232b", weight="600")]
    body += _bands(left, right, top, bottom)
    n = len(points)
    inner = 24.0
    xs = [
        (left + right) / 2 if n == 1 else left + inner + i * (right - left - 2 * inner) / (n - 1)
        for i in range(n)
    ]
    ys = [_y(p.value, top, bottom) for p in points]
    if n > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{VERDICT_COLOUR}" stroke-width="1.8"/>'
        )
    step = max(1, math.ceil(n / 12))
    for i, (p, x, y) in enumerate(zip(points, xs, ys, strict=True)):
        r = 5.5 if p.current else 3.5
        fill = "#b42318" if p.current else VERDICT_COLOUR
        tip = f"{p.label}: risk {p.value:.2f}" + (f" ({p.note})" if p.note else "")
        body.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" '
            f'stroke="#fff" stroke-width="1.2" data-value="{p.value:.4f}">'
            f"<title>{escape(tip)}</title></circle>"
        )
        if n <= 20 or p.current or i == 0:
            above = y - 9 if y - 9 > top + 10 else y + 16
            body.append(_t(x, above, f"{p.value:.2f}", size=10, anchor="middle", fill="#1d232b"))
        if i % step == 0 or i == n - 1:
            body.append(_t(x, bottom + 14, p.label, size=10, anchor="middle"))
    body.append(
        f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
        f'stroke="{MUTED}"/>'
    )
    body.append(_t((left + right) / 2, bottom + 30, "run (oldest first)", anchor="middle"))
    return _svg(width, bottom + 40, title, body)


__all__ = [
    "PALETTE",
    "RISK_BANDS",
    "VERDICT_COLOUR",
    "Bar",
    "Group",
    "RefLine",
    "TrendPoint",
    "bar_chart",
    "risk_trend_chart",
]
