"""The equivalence section's by-length part: exact match, the truncated relation and the best relation
for operands of 1..min(W, 9) digits (:mod:`mechinterp_arith.analysis.relation_by_length`)."""

from __future__ import annotations

from ...analysis.equivalence_plots import relation_by_length_figure
from ...analysis.relation_by_length import relation_by_length
from ..context import ReportContext, escape, table
from .helpers import ci


def by_length_html(ctx: ReportContext) -> str:
    """The by-length table and plot (both operands of exactly m digits, m = 1..min(W, 9))."""
    task, n, seed = ctx.ckpt.task, ctx.settings.n_samples, ctx.settings.seed
    result = ctx.cached("relation_by_length", lambda: relation_by_length(ctx.ckpt, n=n, seed=seed))
    rows = [
        [
            int(m),
            f"{int(r['n'])}{' (all)' if r['exhaustive'] else ''}",
            f"{r['exact']:.3f} {ci((r['exact_lo'], r['exact_hi']))}",
            f"{r['truncated']:.3f} {ci((r['truncated_lo'], r['truncated_hi']))}",
            r["best"] if r["fits"] else f"no relation fits (top: {r['best']})",
            f"{r['best_coverage']:.3f} {ci((r['best_coverage_lo'], r['best_coverage_hi']))}",
        ]
        for m, r in result.iterrows()
    ]
    header = ["m", "pairs", "exact [95% CI]", "truncated [95% CI]", "best relation", "coverage [95% CI]"]
    fig = relation_by_length_figure(result)
    fig.update_layout(width=None, autosize=True, title=None)
    return "\n".join(
        [
            "<h3>By operand length</h3>",
            f"<p>Both operands of exactly m digits (m = 1: both in 0..9; a set used whole when it holds at most "
            f"{n} pairs). <em>Truncated</em>: the share of answers equal to "
            f"{escape(result.attrs['truncated_relation'])}, the follow-up's relation (docs/follow_up.md). "
            f"<code>mechinterp-arith equivalence CKPT --lengths 1-{min(task.width, 9)}</code>"
            " prints the same.</p>",
            table(rows, header, cls="grid"),
            ctx.figure(fig, height=340),
        ]
    )
