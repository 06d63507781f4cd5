"""The Jinja environment every HTML report shares: one template base, number formatting without
``-0.000``, plain text for nested evidence (never a Python ``repr``), and the lightbox ids."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

import jinja2


def num(value: object, digits: int = 3, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None; a value that rounds to zero is
    ``0.000`` (never ``-0.000`` or ``+0.000``); ``signed`` puts ``+`` before positive values."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0.0:
        return text
    if x < 0:
        return "-" + text
    return "+" + text if signed else text


def pct(value: object, digits: int = 1) -> str:
    """``value`` in [0, 1] as a percentage (``-`` for None)."""
    if value is None or not isinstance(value, int | float):
        return "-"
    return num(100.0 * float(value), digits) + "%"


def p_value(value: object) -> str:
    """A p-value for a table: ``<1e-4`` below it, else three significant digits."""
    if value is None or not isinstance(value, int | float):
        return "-"
    v = float(value)
    return "<1e-4" if v < 1e-4 else f"{v:.3g}"


def _scalar(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0.0 or not math.isfinite(value):
            return "0" if value == 0.0 else str(value)
        if abs(value) < 1e-3:
            return f"{value:.2e}"
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def plain(value: object) -> str:
    """Any JSON-like value as readable text: ``k: v, k: v`` for mappings (nested ones in
    parentheses), comma-joined sequences, rounded floats; never a ``repr``."""
    if isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            text = plain(v)
            parts.append(f"{k}: ({text})" if isinstance(v, Mapping) and v else f"{k}: {text}")
        return ", ".join(parts) if parts else "-"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = [plain(v) for v in value]
        sep = "; " if any(isinstance(v, Mapping) for v in value) else ", "
        return sep.join(items) if items else "-"
    return _scalar(value)


def is_mapping(value: object) -> bool:
    return isinstance(value, Mapping)


def anchor(*parts: object) -> str:
    """An HTML id from ``parts`` (letters, digits and dashes), for a lightbox target."""
    text = "-".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def environment() -> jinja2.Environment:
    """The Jinja environment of the report templates (autoescaped, strict undefined)."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("invguard.report").joinpath("templates", name).read_text("utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=num, pct=pct, p_value=p_value, plain=plain, anchor=anchor)
    env.tests["mapping_like"] = is_mapping
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


__all__ = ["anchor", "environment", "num", "p_value", "pct", "plain", "render"]
