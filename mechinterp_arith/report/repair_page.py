"""The page of repair without retraining: every model x seed x intervention x operand length of
``analyses/repair.py`` (interventions of :mod:`mechinterp_arith.analysis.repair`), on the reports'
page (header, navigation, footer; offline): the summary over seeds, one figure per model group, every
seed's row, the coupled models' breaking lengths and the models left out.

>>> build_repair_page("analyses/results/repair.json", "/tmp/repair")      # doctest: +SKIP
PosixPath('/tmp/repair/index.html')
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..core.files import read_json_file
from .assets import ElementIds, figure_html
from .build import write_parts_page
from .context import escape, table

ROW_KEYS = ("group", "seed", "intervention", "kind", "m", "exact", "truncated", "best", "gain")


def read_repair(results: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The parsed results of ``analyses/repair.py``; ValueError naming the file otherwise."""
    source = "the results" if isinstance(results, dict) else str(results)
    data: Any = results if isinstance(results, dict) else read_json_file(Path(results))
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and set(ROW_KEYS) <= set(r) for r in rows):
        raise ValueError(f"{source}: not the results of analyses/repair.py (rows with {', '.join(ROW_KEYS)})")
    return dict(data)


def is_repair_results(path: str | Path) -> bool:
    """Whether ``path`` holds the results of ``analyses/repair.py`` (False for any other file)."""
    try:
        read_repair(path)
    except (ValueError, OSError):
        return False
    return True


def _f(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and x != x) else f"{x:.3f}" if isinstance(x, float) else str(x)


def summary_section(data: dict[str, Any]) -> dict[str, str]:
    """Per model group x intervention x length: exact over seeds, the largest gain, seeds gaining."""
    header = [
        "models",
        "intervention",
        "digits",
        "seeds",
        "exact mean (min-max)",
        "largest gain",
        "seeds gaining >= 0.05",
        "truncated relation (mean)",
        "answer digit n exact (mean)",
    ]
    body = [
        [
            s["group"],
            s["intervention"],
            s["m"],
            s["seeds"],
            f"{_f(s['exact_mean'])} ({_f(s['exact_min'])}-{_f(s['exact_max'])})",
            _f(s["max_gain"]),
            s["seeds_gaining"],
            _f(s.get("truncated_mean")),
            _f(s.get("first_extra_digit_mean")),
        ]
        for s in data.get("summary", [])
    ]
    intro = (
        f"<p>{escape(data.get('n', '?'))} pairs per length, both operands exactly m digits, the same pairs "
        "for every intervention; gain: exact minus the unhooked model's. Answer digit n (the first the "
        "training data never filled with a non-carry value): exact rate, chance about 0.1.</p>"
    )
    return {"title": "Summary over seeds", "html": intro + table(body, header=header, cls="grid")}


def group_figure(rows: pd.DataFrame, group: str) -> go.Figure:
    """Exact match of each intervention (x) per operand length (a colour), one dot per seed."""
    part = rows[rows["group"] == group]
    fig = go.Figure()
    for m, at_m in part.groupby("m"):
        fig.add_trace(
            go.Scatter(
                x=at_m["intervention"],
                y=at_m["exact"],
                mode="markers",
                name=f"{m} digits",
                text=[f"seed {s}" for s in at_m["seed"]],
                marker={"size": 7, "opacity": 0.7},
            )
        )
    fig.update_layout(height=380, margin={"t": 40, "b": 140}, title=f"{group}: exact match", yaxis_range=[-0.02, 1.02])
    return fig


def figure_section(rows: pd.DataFrame, group: str, ids: ElementIds) -> Callable[[object], dict[str, str]]:
    """The section drawing :func:`group_figure` of ``group``."""
    return lambda _: {"title": group, "html": figure_html(group_figure(rows, group), ids)}


def seeds_section(data: dict[str, Any]) -> dict[str, str]:
    """Every seed x intervention x length."""
    header = [
        "models",
        "seed",
        "intervention",
        "digits",
        "exact [95% CI]",
        "truncated relation",
        "best relation (coverage)",
        "digit n exact",
        "digits n..m-1 exact",
        "gain",
    ]
    body = [
        [
            r["group"],
            r["seed"],
            r["intervention"],
            r["m"],
            f"{_f(r['exact'])} [{_f(r.get('exact_lo'))}, {_f(r.get('exact_hi'))}]",
            _f(r["truncated"]),
            f"{r['best']} ({_f(r.get('best_coverage'))})",
            _f(r.get("first_extra_digit")),
            _f(r.get("extra_digits")),
            _f(r["gain"]),
        ]
        for r in data["rows"]
    ]
    return {"title": "Every seed", "html": table(body, header=header, cls="grid")}


def notes_section(data: dict[str, Any]) -> dict[str, str]:
    """The coupled models' breaking-length search, the models left out, the command and its cost."""
    runs = data.get("runs") or [data]
    parts = [
        "<p>"
        + "<br>".join(
            f"<code>{escape(r.get('command', '?'))}</code>: {escape(r.get('cpu_seconds', '?'))} CPU s "
            f"({escape(r.get('seconds', '?'))} s wall, load average {escape(r.get('load_average', '?'))})"
            for r in runs
        )
        + "</p>"
    ]
    breaking = data.get("breaking") or {}
    if breaking:
        body = [[k, ", ".join(map(str, v["lengths"])) or "-", "; ".join(v["log"])] for k, v in breaking.items()]
        parts.append(table(body, header=["model", "lengths scored", "exact by length (no hooks)"], cls="grid"))
    missing = data.get("models_missing") or []
    if missing:
        body = [[m.get("group", "?"), m.get("seed", "-"), m.get("why", "")] for m in missing]
        parts.append(table(body, header=["models", "seed", "left out because"], cls="grid"))
    return {"title": "Breaking lengths, models left out", "html": "".join(parts)}


def build_repair_page(results: str | Path | dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` from the results of ``analyses/repair.py``."""
    data = read_repair(results)
    rows = pd.DataFrame(data["rows"])
    ids = ElementIds()
    groups = list(dict.fromkeys(rows["group"]))
    parts: dict[str, Callable[[object], dict[str, str]]] = {
        "summary": lambda _: summary_section(data),
        **{f"figure {g}": figure_section(rows, g, ids) for g in groups},
        "seeds": lambda _: seeds_section(data),
        "notes": lambda _: notes_section(data),
    }
    return write_parts_page(
        out_dir,
        "Repair without retraining",
        f"{rows['intervention'].nunique()} interventions on {len(groups)} model groups "
        f"({rows.groupby('group')['seed'].nunique().sum()} models), operands past what each generalises to",
        parts,
        settings=f"results {results if not isinstance(results, dict) else '(in memory)'}",
    )
