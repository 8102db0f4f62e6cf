"""Small helpers shared by the analysis sections: placeholders, sample sizes, SVG-only figures."""

from __future__ import annotations

from types import ModuleType

import plotly.graph_objects as go

from ..context import ReportContext, optional_module, unavailable


def modules_or_placeholder(title: str, names: tuple[str, ...], what: str) -> tuple[list[ModuleType], dict | None]:
    """``(modules, None)`` when every ``mechinterp_arith.<name>`` imports, else ``([], placeholder)``."""
    mods = [optional_module(n) for n in names]
    missing = [n for n, m in zip(names, mods) if m is None]
    if missing:
        return [], unavailable(title, ", ".join(f"mechinterp_arith.{m}" for m in missing), what)
    return mods, None


def fixed_length_only(title: str, ctx: ReportContext) -> dict | None:
    """A short note instead of the section when the checkpoint's format is unpadded."""
    if ctx.ckpt.task.fixed_length:
        return None
    return {"title": title, "html": "<p>This analysis needs a fixed-length (padded) format.</p>"}


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
