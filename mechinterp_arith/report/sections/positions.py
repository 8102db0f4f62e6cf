"""Position scheme: the ID each token looks up on an ID and an OOD example, and how the model
fares at every operand length the format holds (exact match, the relation its answers follow,
separability, operand alignment)."""

from __future__ import annotations

import plotly.graph_objects as go

from ...analysis.length_generalisation import length_profile
from ...core.data import example_pair
from ...core.position_schemes import numbering_of
from ..context import ReportContext, escape, table
from .helpers import attempt, not_applicable, size, skipped

TITLE = "Position scheme and length generalisation"
SCHEME_NOTES = {
    "learned": "a learned vector per token index",
    "rotary": "queries and keys rotated by the token index (no table)",
    "nope": "no position information: the table is zero and frozen",
    "randomized": "a learned table read at evenly spaced IDs (random sorted IDs while training)",
    "abacus": "a digit's place within its own number (+1); padding zeros hidden from attention",
    "coupling": "digits of equal significance share one ID; zero padding outside the operands' span hidden",
}


def example_rows(ctx: ReportContext, a: int, b: int) -> list[list]:
    """One row per input token of ``a op b``: index, token, position ID, read by attention."""
    task, model = ctx.ckpt.task, ctx.ckpt.model
    tokens = task.encode_batch([a], [b])[0][:, : task.n_ctx].to(ctx.ckpt.device)
    ids, visible = numbering_of(model, tokens)
    return [
        [i, task.vocab[t], int(p), "yes" if v else "no (padding)"]
        for i, (t, p, v) in enumerate(zip(tokens[0].tolist(), ids[0].tolist(), visible[0].tolist()))
    ]


def section(ctx: ReportContext) -> dict:
    skip = not_applicable(ctx, TITLE, "The length profile", needs_ood=True)
    if skip is not None:
        return skip
    ckpt, task = ctx.ckpt, ctx.ckpt.task
    scheme = ckpt.model_config.positional
    longest = task.width
    a_id, b_id = example_pair(task)
    a_ood, b_ood = example_pair(task, m=longest)
    html = [
        f"<p><strong>{escape(scheme)}</strong>: {escape(SCHEME_NOTES.get(scheme, ''))}; "
        f"context {ckpt.model_config.n_ctx}.</p>"
    ]
    for label, (a, b) in (
        (f"in distribution ({task.digits} digits)", (a_id, b_id)),
        (f"{longest} digits", (a_ood, b_ood)),
    ):
        html += [
            f"<details><summary>Position IDs, {escape(label)}: {escape(task.to_text(a, b))}</summary>",
            table(example_rows(ctx, a, b), header=["index", "token", "position ID", "attended"], cls="grid compact"),
            "</details>",
        ]
    profile, reason = attempt(
        lambda: ctx.cached("length_profile", lambda: length_profile(ckpt, n=size(ctx, 500, 60), seed=ctx.settings.seed))
    )
    if profile is None:
        return {"title": TITLE, "html": "\n".join(html + [skipped("The length profile", reason)])}
    rows = [
        [
            m,
            f"{r.exact:.3f}",
            r.relation,
            f"{r.coverage:.3f}",
            f"{r.separability_units:.3f}",
            f"{r.separability_first_ood:.3f}",
            f"{r.alignment_id:.3f}",
            "" if r.alignment_ood != r.alignment_ood else f"{r.alignment_ood:.3f}",
        ]
        for m, r in profile.iterrows()
    ]
    html.append(
        table(
            rows,
            header=[
                "operand digits",
                "exact",
                "best relation",
                "coverage",
                "separability (units)",
                f"separability (digit {task.digits})",
                f"alignment (digits < {task.digits})",
                f"alignment (digits >= {task.digits})",
            ],
            cls="grid",
        )
    )
    fig = go.Figure(
        [
            go.Bar(name=f"{m} digits", x=list(range(len(r.alignment_by_digit))), y=r.alignment_by_digit)
            for m, r in profile.iterrows()
        ]
    )
    fig.update_layout(
        barmode="group",
        height=320,
        margin={"t": 30, "b": 40},
        xaxis_title="answer digit k (0 = units)",
        yaxis_title="attention to a_k + b_k (best head)",
        yaxis_range=[0, 1],
    )
    html += [
        ctx.figure(fig),
        f"<p>Operands of exactly m digits, {escape(size(ctx, 500, 60))} pairs per length (seed "
        f"{escape(ctx.settings.seed)}); separability: nearest-centroid accuracy of the true answer digit in the "
        "top 3 principal components of the last residual state at the position predicting it; alignment: per "
        "answer digit, the attention of the best head from that position to a_k and b_k together.</p>",
    ]
    return {"title": TITLE, "html": "\n".join(html)}
