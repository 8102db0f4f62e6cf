"""The length-generalisation lab's page: every position scheme side by side, from the lab's results
(rows of :func:`~mechinterp_arith.analysis.length_generalisation.length_profile` per scheme and seed,
as written by ``analyses/length_generalisation.py``), on the page the other reports use (header,
navigation, footer): the comparison table, one figure per measure (a colour per scheme, shared by
its seeds' dots), and the timings.

>>> build_length_lab_page("analyses/results/length_generalisation.json", "/tmp/lab")   # doctest: +SKIP
PosixPath('/tmp/lab/index.html')
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ..analysis.length_generalisation import compare_schemes
from ..core.files import read_json_file
from .assets import ElementIds, figure_html
from .build import write_parts_page
from .context import escape, table
from .length_circuits import circuits_section, read_circuits

COLORS = qualitative.Plotly
MEASURES = {
    "exact": "exact match",
    "coverage": "coverage of the best relation",
    "separability_first_ood": "separability of answer digit n",
    "alignment_ood": "alignment of a_k, b_k (digits >= n)",
}


def lab_rows(results: str | Path | dict) -> pd.DataFrame:
    """The rows of a results file (or its parsed JSON) as a DataFrame; ValueError naming the file
    when it is not the lab's JSON object (truncated, not JSON, a list, rows missing or malformed)."""
    source = "the results" if isinstance(results, dict) else str(results)
    if not isinstance(results, dict):
        results = read_json_file(Path(results))
    if not isinstance(results, dict) or not isinstance(results.get("rows", []), list):
        raise ValueError(
            f"{source} is not a results file of analyses/length_generalisation.py: expected a JSON object "
            f'with a "rows" list, got {type(results).__name__}'
        )
    rows = pd.DataFrame(results.get("rows", []))
    if rows.empty:
        raise ValueError(f"{source} holds no rows: run analyses/length_generalisation.py first")
    missing = [c for c in ("scheme", "seed", "m", *MEASURES) if c not in rows.columns]
    if missing:
        raise ValueError(f"{source}: its rows lack {', '.join(missing)}; is it the lab's results file?")
    return rows


def scheme_colors(schemes) -> dict[str, str]:
    """One colour per scheme, in order, the same for its line and its seeds' dots (no colour repeats
    for up to 10 schemes: plotly's default cycle would give a line and its dots different colours
    and wrap after five schemes)."""
    return {scheme: COLORS[i % len(COLORS)] for i, scheme in enumerate(schemes)}


def measure_figure(rows: pd.DataFrame, measure: str) -> go.Figure:
    """``measure`` against operand length: one line per scheme (seed mean), one dot per seed, in the
    scheme's colour; whole-digit ticks."""
    fig = go.Figure()
    colors = scheme_colors(rows["scheme"].unique())
    for scheme, part in rows.groupby("scheme", sort=False):
        mean = part.groupby("m")[measure].mean()
        color = colors[str(scheme)]
        fig.add_trace(
            go.Scatter(
                x=mean.index,
                y=mean.values,
                mode="lines+markers",
                name=scheme,
                legendgroup=scheme,
                line={"color": color},
                marker={"color": color},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=part["m"],
                y=part[measure],
                mode="markers",
                name=f"{scheme} seeds",
                legendgroup=scheme,
                showlegend=False,
                marker={"size": 5, "opacity": 0.5, "color": color},
                text=[f"seed {s}" for s in part["seed"]],
            )
        )
    lengths = sorted(int(m) for m in rows["m"].unique())
    fig.update_layout(
        height=360,
        margin={"t": 40, "b": 40},
        title=MEASURES[measure],
        xaxis={"title": "operand digits", "tickmode": "array", "tickvals": lengths},
        yaxis_range=[-0.02, 1.02],
    )
    return fig


def comparison_section(rows: pd.DataFrame, threshold: float) -> dict:
    """The table of :func:`~mechinterp_arith.analysis.length_generalisation.compare_schemes`."""
    summary = compare_schemes(rows, threshold)
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
    intro = (
        f"<p>Each row: operands of exactly m digits, {escape(rows['seed'].nunique())} seeds per scheme "
        f"(docs/length_generalisation.md gives the commands).</p>"
    )
    return {"title": "Schemes side by side", "html": intro + table(body, header=header, cls="grid")}


def timing_section(rows: pd.DataFrame) -> dict:
    """Seconds each scheme's seeds took to train and to analyse, and the load they trained under."""
    if not {"train_seconds", "analysis_seconds", "steps"} <= set(rows.columns):
        return {
            "title": "Timing",
            "html": '<p class="placeholder">The results record no timings.</p>',
            "status": "skipped",
        }
    per_seed = rows.groupby(["scheme", "seed"], sort=False).agg(
        train=("train_seconds", "first"), analysis=("analysis_seconds", "sum"), steps=("steps", "first")
    )
    body = [
        [
            scheme,
            len(part),
            int(part["steps"].iloc[0]),
            f"{part['train'].mean():.1f}",
            f"{part['train'].min():.1f}-{part['train'].max():.1f}",
            f"{part['analysis'].mean():.1f}",
        ]
        for scheme, part in per_seed.groupby(level=0, sort=False)
    ]
    header = ["scheme", "seeds", "steps", "train s (mean)", "train s (min-max)", "analysis s (mean, all lengths)"]
    loads = [x for v in rows.get("train_load_average", pd.Series(dtype=object)).dropna() for x in v]
    note = f"<p>1-minute load average while training: {min(loads):.2f}-{max(loads):.2f} (a shared machine).</p>"
    return {"title": "Timing", "html": table(body, header=header, cls="grid") + (note if loads else "")}


def build_length_lab_page(
    results: str | Path | dict, out_dir: str | Path, threshold: float = 0.95, circuits: str | Path | None = None
) -> Path:
    """Write ``out_dir/index.html``: the comparison table, one figure per measure, the circuits by
    length (``circuits``: the results of ``analyses/circuits_by_length.py``; default: the
    ``circuits_by_length.json`` next to ``results``, when there is one) and the timings, on the
    reports' page (header, navigation, footer; offline)."""
    rows = lab_rows(results)
    if circuits is None and not isinstance(results, dict):
        sibling = Path(results).with_name("circuits_by_length.json")
        circuits = sibling if sibling.is_file() else None
    circuit_data = None if circuits is None else read_circuits(circuits)
    ids = ElementIds()

    def measure_section(measure: str) -> Callable[[object], dict[str, str]]:
        return lambda _: {
            "title": MEASURES[measure].capitalize(),
            "html": figure_html(measure_figure(rows, measure), ids),
        }

    parts: dict[str, Callable[[object], dict[str, str]]] = {
        "comparison": lambda _: comparison_section(rows, threshold),
        **{measure: measure_section(measure) for measure in MEASURES},
        **({"circuits": lambda _: circuits_section(circuit_data, ids)} if circuit_data is not None else {}),
        "timing": lambda _: timing_section(rows),
    }
    return write_parts_page(
        out_dir,
        "Length generalisation by position scheme",
        f"addition, {rows['scheme'].nunique()} position schemes x {rows['seed'].nunique()} seeds, "
        f"operands of {int(rows['m'].min())} to {int(rows['m'].max())} digits",
        parts,
        settings=f"results {results if not isinstance(results, dict) else '(in memory)'}, threshold {threshold:.0%}",
    )
