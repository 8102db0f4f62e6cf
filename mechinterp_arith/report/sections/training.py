"""Training curves: loss and ID / OOD exact match against the training step.

Two sources: the metrics logged while training (``ckpt.history``) and, when the checkpoint has
snapshots, every snapshot re-scored here on the report's ID and OOD sets, with the rate of OOD
answers that follow the study's rule (a mod 10^n) op (b mod 10^n).
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...core import data
from ...core.evaluate import snapshot_scores
from ..context import ReportContext, escape

TITLE = "Training curves"


def snapshot_curve(ctx: ReportContext) -> list[dict]:
    """``[{"step", "id_exact", "ood_exact", "ood_equivalent"}]`` over snapshots and the final model
    (:func:`~mechinterp_arith.core.evaluate.snapshot_scores` at the report's size and seed)."""

    def compute():
        scores = snapshot_scores(ctx.ckpt, ctx.settings.n_samples, ctx.settings.seed)
        return scores.to_dict(orient="records")

    return ctx.cached("snapshot_curve", compute)


def section(ctx: ReportContext) -> dict:
    ckpt = ctx.ckpt
    history = [h for h in ckpt.history if "step" in h]
    if not history and not ckpt.snapshot_steps():
        return {
            "title": TITLE,
            "html": "<p>This checkpoint records no training history and no snapshots (e.g. imported weights).</p>",
        }
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "exact match"))
    steps = [h["step"] for h in history]
    if history and "loss" in history[0]:
        fig.add_trace(
            go.Scatter(x=steps, y=[h["loss"] for h in history], mode="lines+markers", name="loss (logged)"),
            row=1,
            col=1,
        )
        fig.update_yaxes(type="log", row=1, col=1)
    for key, label in (("id_exact", "ID exact (logged)"), ("ood_exact", "OOD exact (logged)")):
        if history and key in history[0]:
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[h[key] for h in history],
                    mode="markers",
                    name=label,
                    marker={"size": 9, "symbol": "diamond"},
                ),
                row=1,
                col=2,
            )
    curve = snapshot_curve(ctx) if ckpt.snapshot_steps() else []
    n = ctx.settings.n_samples
    m = data.default_ood_digits(ckpt.task)
    for key, label in (
        ("id_exact", f"ID exact (snapshots, n={n})"),
        ("ood_exact", f"OOD {m}-digit exact (snapshots)"),
        ("ood_equivalent", f"OOD answer = {ckpt.task.equivalent_description()}"),
    ):
        if curve and key in curve[0]:
            fig.add_trace(
                go.Scatter(x=[r["step"] for r in curve], y=[r[key] for r in curve], mode="lines+markers", name=label),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=2)
    fig.update_layout(height=420, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.2})
    html = [ctx.figure(fig)]
    if curve:
        last = curve[-1]
        summary = f"At step {last['step']}: ID exact {last['id_exact']:.3f}"
        if "ood_exact" in last:
            summary += (
                f", OOD exact {last['ood_exact']:.3f}, OOD answers following the mod rule {last['ood_equivalent']:.3f}"
            )
        html.append(f"<p>{escape(summary)} (n = {n} pairs per set, seed {ctx.settings.seed}).</p>")
    return {"title": TITLE, "html": "\n".join(html)}
