"""Attention patterns (circuitsvis) of ID inputs beside members of their OOD equivalence class.

The study's finding: an OOD input such as 1349+705 is answered as its ID representative 349+705.
If the model ignores the extra digits, its attention at the answer positions should match too
(:func:`~mechinterp_arith.analysis.attention.class_attention` computes the patterns and distances).
"""

from __future__ import annotations

from ...analysis.attention import class_attention, token_labels
from ...core import data
from ...core.errors import NotApplicable
from ...core.numbers import as_operands
from ...core.positions import require_fixed_length
from ..context import ReportContext, escape, table
from .helpers import skipped

TITLE = "Attention patterns: ID inputs and their OOD class members"
ID_EXAMPLES = (data.EXAMPLE, (567, 489))  # reduced to each task's ID representative by class_attention


def section(ctx: ReportContext) -> dict:
    ckpt, task = ctx.ckpt, ctx.ckpt.task
    L, H = ckpt.model_config.n_layers, ckpt.model_config.n_heads
    try:
        require_fixed_length(task)
        data.require_ood_digits(task)
    except NotApplicable as e:
        return {"title": TITLE, "html": skipped("Attention views", str(e))}
    html = [
        f"<p>Each view shows all {L * H} heads over the sequence the model reads while answering "
        f"(the prompt and its own generated answer digits; <code>aK</code>/<code>bK</code> is the "
        f"10<sup>K</sup> digit of an operand, <code>ansK</code> of the answer). Select a head to enlarge it.</p>"
    ]
    for a0, b0 in ID_EXAMPLES:
        view = class_attention(ckpt, a0, b0, seed=ctx.settings.seed)
        a, b = (as_operands([m[i] for m in view.members]) for i in (0, 1))
        rule, truth = task.equivalent_answer(a, b), task.apply(a, b)
        columns = []
        for i, (x, y) in enumerate(view.members):
            kind = "ID" if i == 0 else "OOD"
            caption = (
                f"{kind}: {task.describe(str(x), str(y))}: model {int(view.answers[i])}, "
                f"true {int(truth[i])}, rule {int(rule[i])}"
            )
            columns.append(
                f'<figure class="attn"><figcaption>{escape(caption)}</figcaption>'
                f"{ctx.attention(view.patterns[i], token_labels(task, view.tokens[i]), view.heads)}</figure>"
            )
        x0, y0 = view.members[0]
        html.append(f"<h3>{escape(task.describe(str(x0), str(y0)))} and its class</h3>")
        html.append('<div class="side-by-side">' + "".join(columns) + "</div>")
        diffs = [
            [task.describe(str(r["a"]), str(r["b"]))] + [f"{r[h]:.3f}" for h in view.heads]
            for r in view.distance.to_dict(orient="records")
        ]
        if diffs:
            html.append(
                "<p>Largest total-variation distance between the OOD and the ID pattern, over the "
                "positions that predict answer digits (0: identical, 1: disjoint):</p>"
            )
            html.append(table(diffs, header=["OOD member"] + view.heads, cls="grid"))
    return {"title": TITLE, "html": "\n".join(html)}
