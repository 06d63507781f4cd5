"""Safe reading of YAML configuration files: bounded, without anchors or aliases, with line numbers.

Every configuration InvGuard reads (the assessment's ``invguard.yaml``, the gateway's
``gateway.yaml``) goes through :func:`load_yaml_config`:

* the file may hold at most :data:`MAX_CONFIG_BYTES` bytes, and collections may nest at most
  :data:`MAX_DEPTH` levels deep;
* anchors and aliases (``&name``, ``*name``, and so the ``<<: *name`` merge) are refused: a few
  hundred bytes of nested aliases expand to gigabytes (a "billion laughs" document), and a
  configuration has no need of them;
* a key given twice in one mapping is refused (YAML would silently keep the last one);
* the returned :class:`YamlDocument` knows the line of every field, so that validation errors can
  say ``invguard.yaml:12: systems[0].attacks[0].seeds[0]: ...``.

Every problem is a one-line :class:`ConfigError` (or the subclass the caller names) that names the
file and, where known, the line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from invguard.config_errors import ConfigError, Loc

MAX_CONFIG_BYTES = 1_000_000
"""The largest configuration file read (1 MB; real ones are a few kilobytes)."""
MAX_DEPTH = 64
"""How deeply mappings and sequences may nest in a configuration."""

try:  # libyaml when available: the same grammar, parsed in C
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class RefusedYamlError(Exception):
    """A document that parses but is not accepted (an alias or anchor, nesting too deep, a key
    given twice); ``line`` is 1-based."""

    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class YamlDocument:
    """A parsed configuration: its data and the 1-based line of each field (by location, e.g.
    ``("systems", 0, "attacks")``: the line of the ``attacks`` key of the first system)."""

    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest enclosing field that the file spells out (a
        missing field is reported at its parent); None at the top level."""
        for n in range(len(loc), 0, -1):
            hit = self.lines.get(tuple(loc[:n]))
            if hit is not None:
                return hit
        return None


def _line(mark: Any) -> int | None:
    return int(mark.line) + 1 if mark is not None else None


_ALIAS_PROBLEM = (
    "YAML anchors and aliases ({}) are not accepted in a configuration; write the value out"
)


def _check_events(text: str) -> None:
    """Refuse anchors, aliases and nesting deeper than :data:`MAX_DEPTH` (one streaming pass)."""
    loader = _Loader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.AliasEvent):
                raise RefusedYamlError(
                    _line(event.start_mark), _ALIAS_PROBLEM.format(f"*{event.anchor}")
                )
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise RefusedYamlError(_line(event.start_mark), _ALIAS_PROBLEM.format(f"&{anchor}"))
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise RefusedYamlError(
                        _line(event.start_mark),
                        f"nested more than {MAX_DEPTH} levels deep",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    """Record the line of every field below ``node`` (at ``loc``); refuse duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            name = str(key.value)
            if name in seen and name != "<<":
                raise RefusedYamlError(_line(key.start_mark), f"key '{name}' is given twice")
            seen.add(name)
            here = (*loc, name)
            lines[here] = _line(key.start_mark) or 1
            _index(value, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            here = (*loc, i)
            lines[here] = _line(item.start_mark) or 1
            _index(item, here, lines)


def parse_yaml(text: str) -> YamlDocument:
    """Parse ``text`` as a configuration (see the module docstring); raise ``yaml.YAMLError`` for
    a syntax error and :class:`RefusedYamlError` for a document that is not accepted."""
    _check_events(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        if node is None:
            return YamlDocument(None, lines)
        _index(node, (), lines)
        return YamlDocument(loader.construct_document(node), lines)
    finally:
        loader.dispose()


def _read(p: Path, error: Callable[[str], ConfigError], not_found: str) -> str:
    if not p.is_file():
        raise error(f"{p}: {not_found}")
    try:
        with p.open("rb") as fh:
            blob = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise error(f"{p}: cannot read configuration: {exc.strerror or exc}") from None
    if len(blob) > MAX_CONFIG_BYTES:
        raise error(
            f"{p}: configuration file is larger than {MAX_CONFIG_BYTES:,} bytes "
            "(a configuration is a few kilobytes)"
        )
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: cannot read configuration: not UTF-8 text ({exc.reason})") from None


def load_yaml_config(
    path: str | Path,
    *,
    error: Callable[[str], ConfigError] = ConfigError,
    not_found: str = "configuration file not found",
) -> YamlDocument:
    """Read the configuration file ``path`` safely (see the module docstring); raise ``error``
    (a :class:`ConfigError` class) with one line naming the file and, where known, the line."""
    p = Path(path)
    text = _read(p, error, not_found)
    try:
        return parse_yaml(text)
    except RefusedYamlError as exc:
        at = f":{exc.line}" if exc.line is not None else ""
        raise error(f"{p}{at}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{p}{at}: YAML syntax error: {problem}") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise error(f"{p}: cannot read a value: {first}") from None


def error_prefix(path: Path | None, doc: YamlDocument | None, loc: Loc) -> str:
    """``file:line: `` for an error at ``loc`` (``file: `` when the line is unknown, nothing
    without a file)."""
    if path is None:
        return ""
    line = doc.line(loc) if doc is not None else None
    return f"{path}:{line}: " if line is not None else f"{path}: "


__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "RefusedYamlError",
    "YamlDocument",
    "error_prefix",
    "load_yaml_config",
    "parse_yaml",
]
