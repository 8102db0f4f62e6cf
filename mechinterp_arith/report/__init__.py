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

from .build import ReportResult, SectionResult, build_report, render_page, run_section
from .context import ReportContext, ReportSettings
from .sections import SECTIONS
from .sweep_page import build_sweep_report

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
