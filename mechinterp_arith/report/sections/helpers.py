"""Small helpers shared by the analysis sections: skipped parts, sample sizes, SVG-only figures."""

from __future__ import annotations

import plotly.graph_objects as go

from ...core import data
from ...core.errors import NotApplicable
from ...core.positions import require_fixed_length
from ..context import ReportContext, escape


def not_applicable(ctx: ReportContext, title: str, what: str, needs_ood: bool = False) -> dict | None:
    """The section to show instead of an analysis this checkpoint cannot support (an unpadded
    format; with ``needs_ood``, a format holding no longer operand), with the reason; else None."""
    try:
        require_fixed_length(ctx.ckpt.task)
        if needs_ood:
            data.require_ood_digits(ctx.ckpt.task)
    except NotApplicable as e:
        return {"title": title, "html": skipped(what, str(e))}
    return None


def size(ctx: ReportContext, full: int, quick: int) -> int:
    """A sample size: ``full`` in a normal report, ``quick`` with ``--quick``."""
    return quick if ctx.settings.quick else full


def svg_only(fig: go.Figure) -> go.Figure:
    """The figure with WebGL scatters (``scattergl``) redrawn as SVG ``scatter`` traces.

    Plotly's WebGL traces need a GPU-backed canvas, which headless and some locked-down browsers
    lack; the report's scatters are small enough for SVG.
    """
    if not any(tr.type == "scattergl" for tr in fig.data):
        return fig
    data_ = []
    for tr in fig.data:
        spec = tr.to_plotly_json()
        if spec.pop("type", None) == "scattergl":
            data_.append(go.Scatter(**spec))
        else:
            data_.append(tr)
    return go.Figure(data=data_, layout=fig.layout)


def attempt(fn, *args, **kwargs):
    """``(fn(...), None)``, or ``(None, reason)`` when the analysis does not apply to this checkpoint
    (:class:`NotApplicable`, e.g. an answer digit a product cannot change alone). Any other
    exception is a failure and propagates (the section is then shown as failed)."""
    try:
        return fn(*args, **kwargs), None
    except NotApplicable as e:
        return None, str(e)


def skipped(what: str, message: str) -> str:
    """A one-line note for a part of a section that does not apply to this checkpoint."""
    return f'<p class="skipped"><em>{escape(what)} not shown for this checkpoint:</em> {escape(message)}</p>'


def ci(lo_hi) -> str:
    lo, hi = lo_hi
    return f"[{lo:.3f}, {hi:.3f}]"
