"""The self-contained HTML report: ``mechinterp-arith report`` writes one offline page.

>>> from mechinterp_arith import load
>>> from mechinterp_arith.report import build_report, ReportSettings
>>> result = build_report(load("add3"), "report", ReportSettings(quick=True))   # doctest: +SKIP
>>> result.path                                                                # doctest: +SKIP
PosixPath('report/index.html')

Sections live in :mod:`mechinterp_arith.report.sections` (``SECTIONS``: key -> function); each is
``section(ctx: ReportContext) -> dict(title=..., html=...)``.
"""

from .build import ReportResult, SectionResult, build_report, render_page, run_section
from .context import ReportContext, ReportSettings
from .sections import SECTIONS

__all__ = [
    "SECTIONS",
    "ReportContext",
    "ReportResult",
    "ReportSettings",
    "SectionResult",
    "build_report",
    "render_page",
    "run_section",
]
