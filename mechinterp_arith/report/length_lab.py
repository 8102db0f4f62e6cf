"""The length-generalisation lab's page: every position scheme side by side, from the lab's results
(rows of :func:`~mechinterp_arith.analysis.length_generalisation.length_profile` per scheme and seed,
as written by ``analyses/length_generalisation.py``).

>>> build_length_lab_page("analyses/results/length_generalisation.json", "/tmp/lab")   # doctest: +SKIP
PosixPath('/tmp/lab/index.html')
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ..analysis.length_generalisation import compare_schemes
from ..core.files import atomic_write_text
from .assets import ElementIds, figure_html, plotly_js
from .context import escape, table

MEASURES = {
    "exact": "exact match",
    "coverage": "coverage of the best relation",
    "separability_first_ood": "separability of answer digit n",
    "alignment_ood": "alignment of a_k, b_k (digits >= n)",
}


def lab_rows(results: str | Path | dict) -> pd.DataFrame:
    """The rows of a results file (or its parsed JSON) as a DataFrame."""
    parsed = results if isinstance(results, dict) else json.loads(Path(results).read_text())
    rows = pd.DataFrame(parsed.get("rows", []))
    if rows.empty:
        raise ValueError("the results hold no rows: run analyses/length_generalisation.py first")
    return rows


def measure_figure(rows: pd.DataFrame, measure: str) -> go.Figure:
    """``measure`` against operand length: one line per scheme (seed mean), one dot per seed."""
    fig = go.Figure()
    for scheme, part in rows.groupby("scheme", sort=False):
        mean = part.groupby("m")[measure].mean()
        fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers", name=scheme, legendgroup=scheme))
        fig.add_trace(
            go.Scatter(
                x=part["m"],
                y=part[measure],
                mode="markers",
                name=f"{scheme} seeds",
                legendgroup=scheme,
                showlegend=False,
                marker={"size": 5, "opacity": 0.5},
                text=[f"seed {s}" for s in part["seed"]],
            )
        )
    fig.update_layout(
        height=360,
        margin={"t": 40, "b": 40},
        title=MEASURES[measure],
        xaxis_title="operand digits",
        yaxis_range=[-0.02, 1.02],
    )
    return fig


def build_length_lab_page(results: str | Path | dict, out_dir: str | Path, threshold: float = 0.95) -> Path:
    """Write ``out_dir/index.html``: the comparison table and one figure per measure (offline page)."""
    rows = lab_rows(results)
    summary = compare_schemes(rows, threshold)
    ids = ElementIds()
    header = [
        "scheme",
        "digits",
        "seeds",
        "exact (mean)",
        "exact (min-max)",
        f"seeds >= {threshold:.0%}",
        "best relation (seeds)",
        "coverage",
        "separability units / digit n",
        "alignment ID / OOD",
    ]
    body = [
        [
            r["scheme"],
            r["m"],
            r["seeds"],
            f"{r['exact_mean']:.3f}",
            f"{r['exact_min']:.3f}-{r['exact_max']:.3f}",
            r["seeds_reaching"],
            f"{r['relation']} ({r['relation_seeds']})",
            f"{r['coverage_mean']:.3f}",
            f"{r['separability_units']:.3f} / {r['separability_first_ood']:.3f}",
            f"{r['alignment_id']:.3f} / " + ("-" if pd.isna(r["alignment_ood"]) else f"{r['alignment_ood']:.3f}"),
        ]
        for r in summary.to_dict("records")
    ]
    figures = "\n".join(figure_html(measure_figure(rows, m), ids) for m in MEASURES)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Length generalisation by position scheme</title>
<script>{plotly_js()}</script>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;}} table{{border-collapse:collapse;}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px;}}</style></head>
<body><h1>Length generalisation by position scheme</h1>
<p>Addition trained on operands of up to {escape(int(rows["m"].min()))} digits; each row: operands of exactly m
digits, {escape(rows["seed"].nunique())} seeds per scheme (docs/length_generalisation.md gives the commands).</p>
{table(body, header=header, cls="grid")}
{figures}
</body></html>
"""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
