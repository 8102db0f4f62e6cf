"""Equivalence relations: which ID relation explains the OOD answers (table, by length, grid maps, probabilities).

Built on :mod:`mechinterp_arith.analysis.equivalence` (relation search, Wilson intervals, consistency with
the ID representative) and :mod:`mechinterp_arith.analysis.equivalence_plots` (the study's figures).
"""

from __future__ import annotations

from ...analysis import equivalence as eq
from ...analysis import equivalence_plots as plots
from ...analysis.choices import FIT_THRESHOLD
from ...core import data
from ..context import ReportContext, escape, table
from .equivalence_lengths import by_length_html
from .helpers import ci, not_applicable, size

TITLE = "Equivalence relations"
WHAT = "The equivalence-relation analysis (table, grid maps, probability heatmaps)"
N_RELATIONS = 5  # rows of the relation table
N_COUNTER = 5


def ood_sets(task, n: int, seed: int) -> dict[str, tuple]:
    """``label -> (a, b)``: both operands m digits and one operand m digits, for m = n+1 .. min(n+2, W)."""
    sets = {}
    for m in data.ood_digits_range(task, count=2):
        sets[f"both {m}-digit"] = data.ood_both(task, m, n, seed=seed)
        sets[f"one {m}-digit"] = data.ood_one_longer(task, m, n, seed=seed)
    return sets


def equivalence_results(ctx: ReportContext) -> dict:
    """``label -> EquivalenceResult`` on every OOD set (computed once per report)."""

    def compute():
        task, n, seed = ctx.ckpt.task, ctx.settings.n_samples, ctx.settings.seed
        return {
            label: eq.analyse_set(ctx.ckpt.model, task, a, b, label)
            for label, (a, b) in ood_sets(task, n, seed).items()
        }

    return ctx.cached("equivalence_results", compute)


def _summary_table(results: dict) -> str:
    rows = []
    for label, r in results.items():
        top = r.search.top
        best = r.best.name if r.best is not None else f"no relation fits (top: {top.name})"
        rows.append(
            [
                label,
                r.n,
                f"{r.exact:.3f}",
                best,
                f"{top.coverage:.3f}",
                ci(top.ci95),
                f"{r.consistency:.3f}",
                r.search.n_counterexamples,
            ]
        )
    return table(
        rows,
        ["OOD set", "n", "exact", "best relation", "coverage", "95% CI", "= own answer on ID representative", "misses"],
        cls="grid",
    )


def _relation_table(results: dict) -> str:
    names: list[str] = []
    for r in results.values():
        for rel in r.search.relations[:3]:
            if rel.name not in names:
                names.append(rel.name)
    names = names[:N_RELATIONS]
    rows = []
    for name in names:
        row = [name]
        for r in results.values():
            rel = next(x for x in r.search.relations if x.name == name)
            row.append(f"{rel.coverage:.3f} {ci(rel.ci95)}")
        rows.append(row)
    return table(rows, ["relation"] + [f"{label}: coverage [95% CI]" for label in results], cls="grid")


def _counterexamples(results: dict) -> str:
    label, r = next(iter(results.items()))
    df = r.counterexamples.head(N_COUNTER)
    if df.empty:
        return f"<p>No counter-example in the {escape(label)} set: every output equals the top relation.</p>"
    return (
        f"<p>Counter-examples in the {escape(label)} set ({r.search.n_counterexamples} of {r.n} outputs "
        f"differ from <em>{escape(r.search.top.name)}</em>; first {len(df)}):</p>"
        + table(df.values.tolist(), list(df.columns), cls="grid")
    )


def section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, TITLE, WHAT, needs_ood=True)
    if note:
        return note
    task = ctx.ckpt.task
    results = equivalence_results(ctx)
    html = [
        f"<p>Each candidate relation is scored by the share of model outputs exactly equal to it "
        f"(coverage, with a 95% Wilson interval); a relation fits when the interval's lower end exceeds "
        f"{FIT_THRESHOLD}. <em>Consistency</em>: the share of OOD inputs answered exactly as the model "
        f"answers their ID representative (a mod 10^{task.digits}, b mod 10^{task.digits}). "
        f"{ctx.settings.n_samples} pairs per set, seed {ctx.settings.seed}.</p>",
        _summary_table(results),
        "<h3>Coverage of the leading relations</h3>",
        _relation_table(results),
        _counterexamples(results),
        by_length_html(ctx),
    ]

    points = size(ctx, 60, 20)
    html.append(
        f"<h3>Grid maps</h3><p>{points} x {points} grid of (a, b) from 0 to 2·10^{task.digits} "
        f"(dashed: the ID boundary); the model's map should match the equivalent result, not the true one.</p>"
    )
    grid = plots.relation_maps(ctx.ckpt, points=points)
    grid.update_layout(width=None, autosize=True, title=None)
    html.append(ctx.figure(grid, height=380))

    a0, b0 = data.example_pair(task)
    dist = plots.class_distributions(ctx.ckpt, a0, b0, k=3, seed=ctx.settings.seed)
    fig = plots.class_probability_figure(ctx.ckpt, a0, b0, k=3, seed=ctx.settings.seed)
    fig.update_layout(width=None, autosize=True, title=None)
    html.append(
        f"<h3>Probability heatmaps: {escape(task.describe(str(a0), str(b0)))} and members of its OOD class</h3>"
        "<p>Softmax over digits at each answer position along each input's own greedy path, and the "
        "total-variation distance of each member's distributions from the ID input's (0: identical).</p>"
    )
    html.append(ctx.figure(fig, height=360))
    A = task.answer_width
    rows = [
        [f"{int(r.a)}, {int(r.b)}", int(r.output)] + [f"{r[f'tv_{p}']:.4f}" for p in range(A)] + [f"{r.tv_mean:.4f}"]
        for _, r in dist.tv.iterrows()
    ]
    html.append(table(rows, ["OOD member", "output"] + [f"TV 10^{p}" for p in range(A)] + ["mean"], cls="grid"))
    return {"title": TITLE, "html": "\n".join(html)}
