"""The self-contained HTML report: ``mechinterp-arith report`` writes one offline page.

>>> from mechinterp_arith import load
>>> from mechinterp_arith.report import build_report, ReportSettings
>>> result = build_report(load("add3"), "report", ReportSettings(quick=True))   # doctest: +SKIP
>>> result.path                                                                # doctest: +SKIP
PosixPath('report/index.html')

Sections live in :mod:`mechinterp_arith.report.sections` (``SECTIONS``: key -> function); each is
``section(ctx: ReportContext) -> dict(title=..., html=...)``. :func:`build_sweep_report` writes the
page comparing the runs of a sweep directory (:mod:`mechinterp_arith.report.sweep_page`).
"""

from __future__ import annotations

from ..core.lazy import lazy_names

# public name -> module, imported on first access (PEP 562): the command line reads
# ``report.section_keys`` without importing plotly, torch or the analyses
_LAZY = {
    "ReportResult": "build",
    "SectionResult": "build",
    "build_report": "build",
    "render_page": "build",
    "run_section": "build",
    "ReportContext": "context",
    "ReportSettings": "context",
    "SECTIONS": "sections",
    "build_sweep_report": "sweep_page",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "SECTIONS",
    "ReportContext",
    "ReportResult",
    "ReportSettings",
    "SectionResult",
    "build_report",
    "build_sweep_report",
    "render_page",
    "run_section",
]
