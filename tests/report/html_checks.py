"""Checks shared by the report tests: a page's elements with their ancestors, its inline charts,
that it loads nothing from outside, and that every image and chart can be enlarged."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

VOID = {"img", "meta", "br", "input", "link", "hr", "source"}


class Page(HTMLParser):
    """Every element of a page with its ancestors (tag, attributes), and all ids."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.elements: list[tuple[str, dict[str, str], list[tuple[str, dict[str, str]]]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a, list(self.stack)))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, list(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def ids(self) -> list[str]:
        return [a["id"] for _, a, _ in self.elements if "id" in a]


def svgs(html: str) -> list[ET.Element]:
    """Every inline chart, parsed as XML (a malformed chart fails here)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg[\s\S]*?</svg>", html)]


def chart(html: str, title_part: str) -> ET.Element:
    found = [s for s in svgs(html) if title_part in s.get("aria-label", "")]
    assert len(found) == 1, [s.get("aria-label") for s in svgs(html)]
    return found[0]


def assert_self_contained(html: str) -> None:
    """Nothing is loaded from outside the file: no script, stylesheet link or external source;
    an http(s) URL appears only as a link the reader may follow (``<a href>``)."""
    page = Page(html)
    assert "<script" not in html
    assert "<link" not in html
    assert "url(" not in html
    assert "default-src 'none'" in html  # the CSP forbids fetching anything else
    for tag, attrs, _ in page.elements:
        for key in ("src", "href", "xlink:href", "srcset", "action", "data"):
            value = attrs.get(key, "")
            if value.startswith(("http:", "https:", "//")):
                assert (tag, key) == ("a", "href"), value
            if key == "src" and key in attrs:
                assert value.startswith("data:image/"), (tag, value[:40])
    assert not re.search(r"<[^>]+\son[a-z]+=", html)  # no inline event handlers


def assert_every_figure_enlarges(html: str) -> int:
    """Every image and chart sits in a ``figure.zoom`` with a unique id, opened by a link to that
    id inside it and closed by a link to ``#_`` (an id nothing has: no jump); returns the count."""
    page = Page(html)
    ids = page.ids()
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert "_" not in ids
    shown = [(t, a, anc) for t, a, anc in page.elements if t in ("img", "svg")]
    for tag, attrs, ancestors in shown:
        zooms = [a for t, a in ancestors if t == "figure" and "zoom" in a.get("class", "")]
        assert zooms, f"{tag} {attrs.get('alt', attrs.get('aria-label'))} cannot be enlarged"
        zid = zooms[-1]["id"]
        opener = [a for t, a in ancestors if t == "a" and a.get("class") == "open"]
        assert opener
        assert opener[-1]["href"] == f"#{zid}"
    figures = [a for t, a, _ in page.elements if t == "figure" and "zoom" in a.get("class", "")]
    closers = [a for t, a, _ in page.elements if t == "a" and a.get("class") == "close"]
    assert len(closers) == len(figures)
    assert all(c["href"] == "#_" for c in closers)
    return len(figures)
