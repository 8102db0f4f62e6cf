"""Accuracy by operand length: exact match over a (len a, len b) grid, and the OOD rule's hit rate."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...core import data
from ...core.decoding import generate
from ...core.evaluate import accuracy_by_length, answer_rates, score
from ..context import ReportContext, escape, table
from .common import report_sets

TITLE = "Accuracy by operand length"


def length_grid_rates(ctx: ReportContext) -> dict:
    """``{"lengths", "exact" [la, lb], "equivalent" [la, lb], "n"}`` over lengths 1..width (at most
    ``data.MAX_SPREAD`` of them, evenly spaced, on wide formats; :func:`~mechinterp_arith.core.evaluate.accuracy_by_length`
    on ``n`` pairs per cell)."""

    def compute():
        task, n, seed = ctx.ckpt.task, ctx.settings.n_samples, ctx.settings.seed
        lengths = data.spread_lengths(1, task.width)
        grid = data.length_grid(task, lengths, n, seed=seed)
        a = np.concatenate([p[0] for p in grid.values()])
        b = np.concatenate([p[1] for p in grid.values()])
        cells = accuracy_by_length(ctx.ckpt.model, task, a, b)
        E = np.full((len(lengths), len(lengths)), np.nan)
        R = np.full_like(E, np.nan)
        row = {length: i for i, length in enumerate(lengths)}
        for (x, y), s in cells.items():
            E[row[x], row[y]], R[row[x], row[y]] = s["exact"], s["equivalent"]
        return {"lengths": lengths, "exact": E, "equivalent": R, "n": n}

    return ctx.cached("length_grid", compute)


def section(ctx: ReportContext) -> dict:
    task = ctx.ckpt.task
    grid = length_grid_rates(ctx)
    labels = [str(x) for x in grid["lengths"]]
    rule_name = task.equivalent_description()
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("exact match", f"answer = {rule_name}"), horizontal_spacing=0.15
    )
    for col, key in ((1, "exact"), (2, "equivalent")):
        z = grid[key]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=labels,
                y=labels,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                text=np.round(z, 3),
                texttemplate="%{text}",
                showscale=col == 2,
                hovertemplate="len a %{y}, len b %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="digits of b", row=1, col=col)
        fig.update_yaxes(title_text="digits of a", autorange="reversed", row=1, col=col)
    fig.update_layout(height=430, margin={"t": 40, "b": 40})

    rows = []
    sets = report_sets(ctx)
    for name, (a, b) in sets.items():
        predicted = generate(ctx.ckpt.model, task, a, b).answers
        s = score(task, predicted, task.apply(a, b))
        rates = answer_rates(ctx.ckpt.model, task, a, b, answers=predicted)
        label = (
            f"ID {task.digits}-digit" if name == "id" else f"OOD {data.default_ood_digits(task)}-digit (both operands)"
        )
        rows.append(
            [
                label,
                s["n"],
                f"{s['exact']:.4f}",
                f"{rates['equivalent']:.4f}",
                " ".join(f"{x:.3f}" for x in s["per_digit"]),
            ]
        )
    summary = table(rows, header=["set", "n", "exact", f"= {rule_name}", "per digit (units first)"], cls="grid")
    note = (
        f"<p>{escape(grid['n'])} pairs per cell (seed {ctx.settings.seed}); the model was trained on operands "
        f"of up to {task.digits} digits. Lengths beyond {task.digits} are out of distribution.</p>"
    )
    return {"title": TITLE, "html": "\n".join([summary, ctx.figure(fig), note])}
