"""Configuration errors: :class:`ConfigError`, and one-line messages for pydantic validation
errors (the field path, what was expected, what came).

Shared by the assessment config (:mod:`invguard.assess.config`), the gateway config
(:mod:`invguard.gateway.config`) and the model sources both use (:mod:`invguard.models.sources`),
e.g. ``systems[0].targt: unknown field (did you mean 'target'?)``.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from invguard.errors import InvGuardError

Loc = tuple[int | str, ...]

# error types whose pydantic message reads well after the path, followed by the value given
_WITH_INPUT = frozenset(
    {
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "string_type",
        "bool_type",
        "bool_parsing",
        "literal_error",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "string_pattern_mismatch",
    }
)


class ConfigError(InvGuardError):
    """A configuration (a file, or a field of one) is missing, unreadable or invalid; the message
    is one line that names the file and the field."""


def is_validator_tag(part: int | str) -> bool:
    """pydantic adds ``function-after[...]`` (a model validator) to error locations; not a field."""
    return isinstance(part, str) and part.startswith(("function-after[", "function-wrap["))


def format_loc(loc: Loc) -> str:
    """``('systems', 0, 'target')`` -> ``systems[0].target``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def inner_model(annotation: Any, node: Any) -> Any:
    """The model a field's value ``node`` is validated against: the union member named by its
    ``type`` tag, else the one sharing most keys with it."""
    candidates = _models_in(annotation)
    if len(candidates) > 1 and isinstance(node, dict):
        tag = node.get("type")
        for c in candidates:
            field = c.model_fields.get("type")
            if field is not None and tag in typing.get_args(field.annotation):
                return c
        keys = set(node)
        return max(candidates, key=lambda c: len(keys & set(c.model_fields)))
    return candidates[0] if candidates else None


def known_fields(root: type[BaseModel], raw: Any, loc: Loc) -> list[str]:
    """Field names valid at ``loc`` of ``raw`` (for 'did you mean' hints), walking the schema."""
    model: Any = root
    node: Any = raw
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        node = node.get(part) if isinstance(node, dict) else None
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = inner_model(field.annotation, node)
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields else []


def friendly_error(
    err: Any,
    raw: Any,
    root: type[BaseModel],
    *,
    is_union_tag: Callable[[int | str], bool],
    unknown_field_hint: Callable[[Loc], str | None] | None = None,
) -> str:
    """One line for one pydantic error dict ``err`` on the document ``raw`` validated as ``root``.

    ``is_union_tag`` tells the union-member tags pydantic adds to locations (not field names);
    ``unknown_field_hint`` may replace the message for an unknown field (e.g. a plain-text secret).
    """
    loc = tuple(p for p in err["loc"] if not is_union_tag(p))
    path = format_loc(loc)
    typ = err["type"]
    msg = str(err["msg"])
    if typ == "extra_forbidden":
        special = unknown_field_hint(loc) if unknown_field_hint is not None else None
        if special is not None:
            return f"{path}: {special}"
        field = str(loc[-1]) if loc else "?"
        known = known_fields(root, raw, loc[:-1])
        hint = difflib.get_close_matches(field, known, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        if known:
            suggestion += f"; expected one of: {', '.join(sorted(known))}"
        return f"{path}: unknown field{suggestion}"
    if typ == "missing":
        return f"{path}: required field missing"
    if typ in ("union_tag_invalid", "union_tag_not_found"):
        got = err.get("input")
        tag = got.get("type") if isinstance(got, dict) else None
        expected = err.get("ctx", {}).get("expected_tags", "")
        if typ == "union_tag_not_found":
            return f"{path}.type: required field missing (expected one of: {expected})"
        return f"{path}.type: unknown type {tag!r} (expected one of: {expected})"
    msg = msg.removeprefix("Value error, ")
    if typ in _WITH_INPUT:
        return f"{path}: {msg[:1].lower() + msg[1:]}, got {err.get('input')!r}"
    return f"{path}: {msg}" if path else msg


__all__ = [
    "ConfigError",
    "format_loc",
    "friendly_error",
    "inner_model",
    "is_validator_tag",
    "known_fields",
]
