"""A quick report of the shipped add3 checkpoint, built once per test session (shared by report tests)."""

from __future__ import annotations

import functools
import tempfile
from html.parser import HTMLParser
from pathlib import Path

# Small sets: the tests check structure and rendering; numbers are checked at the section level.
QUICK_N = 60


@functools.lru_cache(maxsize=1)
def quick_report():
    """``(ReportResult, html)`` of ``report add3 --quick --n 60`` in a private temporary directory."""
    import torch

    from mechinterp_arith import load
    from mechinterp_arith.report import ReportSettings, build_report

    out = Path(tempfile.mkdtemp(prefix="mechinterp-arith-report-"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI's default --threads 1: conftest's 2 threads made this ~7x slower under load
    try:
        result = build_report(load("add3", device="cpu"), out, ReportSettings(n=QUICK_N, quick=True), progress=False)
    finally:
        torch.set_num_threads(threads)
    return result, result.path.read_text(encoding="utf-8")


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class ElementIndex(HTMLParser):
    """Every tag's attributes, and for elements with an id: the tags and classes inside them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, dict]] = []
        self.inside: dict[str, dict] = {}
        self._open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.attrs.append((tag, a))
        for _, elem_id in self._open:
            if elem_id is not None:
                info = self.inside[elem_id]
                info["tags"].append(tag)
                info["classes"].update(a.get("class", "").split())
        if tag in VOID:
            return
        elem_id = a.get("id")
        if elem_id is not None:
            self.inside[elem_id] = {"tag": tag, "class": a.get("class", ""), "tags": [], "classes": set()}
        self._open.append((tag, elem_id))

    def handle_startendtag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.attrs.append((tag, a))
        for _, elem_id in self._open:
            if elem_id is not None:
                self.inside[elem_id]["tags"].append(tag)
                self.inside[elem_id]["classes"].update(a.get("class", "").split())

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return


def index_html(html: str) -> ElementIndex:
    parser = ElementIndex()
    parser.feed(html)
    parser.close()
    return parser
