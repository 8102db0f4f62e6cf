"""Patching results as figures: one layer x position heatmap per frame of sites (plotly, offline).

The frames are what :func:`~mechinterp_arith.analysis.circuits.digit_sites` and
:func:`~mechinterp_arith.analysis.circuits.ood_sites` return (one row per kind x layer x position);
the report and the notebooks draw them with :func:`site_figure`.

>>> from mechinterp_arith import load
>>> from mechinterp_arith.analysis.circuits import digit_sites
>>> from mechinterp_arith.core.positions import position_labels
>>> ckpt = load("add3")
>>> sites = digit_sites(ckpt, 1, n=16)
>>> fig = site_figure([sites[sites.kind == "resid_pre"]], ["resid_pre"], "effect", position_labels(ckpt.task))
>>> fig.data[0].z.shape                                   # layers x positions
(3, 15)
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def site_figure(
    frames: Sequence[pd.DataFrame],
    titles: Sequence[str],
    value: str,
    labels: Sequence[str],
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "RdBu",
    height: int | None = None,
) -> go.Figure:
    """One (layer x position) heatmap of column ``value`` per frame (rows: layer ``L0``..; columns:
    ``pos:label`` for every input position, ``labels`` as :func:`~mechinterp_arith.core.positions.position_labels`
    gives them), stacked; RdBu is centred on 0."""
    fig = make_subplots(
        rows=len(frames), cols=1, subplot_titles=list(titles), vertical_spacing=0.12 if len(frames) > 1 else 0.1
    )
    for i, df in enumerate(frames):
        t = df.pivot(index="layer", columns="pos", values=value).reindex(columns=range(len(labels)))
        z = t.values.astype(float)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[f"{p}:{labels[p]}" for p in range(len(labels))],
                y=[f"L{l}" for l in t.index],
                zmin=zmin,
                zmax=zmax,
                zmid=0 if colorscale == "RdBu" else None,
                colorscale=colorscale,
                coloraxis=None,
                showscale=i == 0,
                texttemplate="%{z:.2f}",
                hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>",
            ),
            row=i + 1,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", row=i + 1, col=1)
    fig.update_layout(height=height or 170 * len(frames) + 80, margin={"t": 40, "b": 30})
    return fig
