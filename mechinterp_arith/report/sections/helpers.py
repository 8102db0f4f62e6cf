"""Small helpers shared by the analysis sections: placeholders, sample sizes, SVG-only figures."""

from __future__ import annotations

from types import ModuleType

import plotly.graph_objects as go

from ..context import ReportContext, optional_module, unavailable
from .common import ood_digits


def section_modules(ctx: ReportContext, title: str, names: tuple[str, ...], what: str,
                    needs_ood: bool = False) -> tuple[list[ModuleType], dict | None]:
    """The analysis modules a section needs, or a short note to show instead: when one of them does
    not import, when the format is unpadded, or (``needs_ood``) when it holds no longer operand."""
    mods = [optional_module(n) for n in names]
    missing = [n for n, m in zip(names, mods) if m is None]
    if missing:
        return [], unavailable(title, ", ".join(f"mechinterp_arith.{m}" for m in missing), what)
    task = ctx.ckpt.task
    if not task.fixed_length:
        return [], {"title": title, "html": "<p>This analysis needs a fixed-length (padded) format.</p>"}
    if needs_ood and ood_digits(task) is None:
        return [], {"title": title, "html": "<p>The format holds no operand longer than the trained length.</p>"}
    return mods, None


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
    data = []
    for tr in fig.data:
        spec = tr.to_plotly_json()
        if spec.pop("type", None) == "scattergl":
            data.append(go.Scatter(**spec))
        else:
            data.append(tr)
    fig = go.Figure(data=data, layout=fig.layout)
    return fig


def attempt(fn, *args, **kwargs):
    """``(fn(...), None)``, or ``(None, message)`` when the analysis refuses the input with a ValueError
    or IndexError (e.g. an answer digit a modular or multiplication task cannot isolate)."""
    try:
        return fn(*args, **kwargs), None
    except (ValueError, IndexError) as e:
        return None, f"{type(e).__name__}: {e}"


def skipped(what: str, message: str) -> str:
    """A one-line note for a part of a section that does not apply to this checkpoint."""
    from ..context import escape

    return f'<p class="note"><em>{escape(what)} not shown for this checkpoint:</em> {escape(message)}</p>'


def ci(lo_hi) -> str:
    lo, hi = lo_hi
    return f"[{lo:.3f}, {hi:.3f}]"
