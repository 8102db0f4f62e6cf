"""Attention patterns (circuitsvis) of ID inputs beside members of their OOD equivalence class.

The study's finding: an OOD input such as 1349+705 is answered as its ID representative 349+705.
If the model ignores the extra digits, its attention at the answer positions should match too.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities import get_act_name

from ...core import data
from ...core.data import require_ood_digits
from ...core.decoding import generate
from ...core.errors import NotApplicable
from ...core.numbers import as_operands
from ...core.positions import position_labels, require_fixed_length
from ..context import ReportContext, escape, table
from .helpers import skipped

TITLE = "Attention patterns: ID inputs and their OOD class members"
ID_EXAMPLES = ((349, 705), (567, 489))


def class_members(task, a: int, b: int, seed: int = 0) -> list[tuple[int, int]]:
    """The ID representative of ``(a, b)`` and two random OOD members of its class
    (:func:`~mechinterp_arith.core.data.class_members`), e.g. 349+705, 41349+90705, ..."""
    ra, rb = (int(x[0]) for x in task.id_representative([a], [b]))
    ma, mb = data.class_members(task, ra, rb, k=2, seed=seed)
    return [(ra, rb)] + list(zip(ma.tolist(), mb.tolist()))


def token_labels(task, tokens: Int[Tensor, " pos"]) -> list[str]:
    """``label:token`` per position, e.g. ``a4:0 ... b0:5 ans0:4`` (:func:`position_labels`)."""
    return [f"{r}:{task.vocab[t]}" for r, t in zip(position_labels(task), tokens.tolist())]


@torch.inference_mode()
def attention_of(model: TransformerBridge, tokens: Int[Tensor, " pos"]) -> Float[Tensor, "layer_head dest src"]:
    """Every head's pattern for one sequence, layers then heads: [n_layers * n_heads, pos, pos]."""
    names = [get_act_name("pattern", l) for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens.unsqueeze(0), names_filter=lambda n: n in names)
    return torch.cat([cache[n][0] for n in names]).float().cpu()


def section(ctx: ReportContext) -> dict:
    ckpt, task = ctx.ckpt, ctx.ckpt.task
    model, L, H = ckpt.model, ckpt.model_config.n_layers, ckpt.model_config.n_heads
    names = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    try:
        require_fixed_length(task)
        require_ood_digits(task)
    except NotApplicable as e:
        return {"title": TITLE, "html": skipped("Attention views", str(e))}
    html = [
        f"<p>Each view shows all {L * H} heads over the sequence the model reads while answering "
        f"(the prompt and its own generated answer digits; <code>aK</code>/<code>bK</code> is the "
        f"10<sup>K</sup> digit of an operand, <code>ansK</code> of the answer). Select a head to enlarge it.</p>"
    ]
    for a0, b0 in ID_EXAMPLES:
        members = class_members(task, a0, b0, seed=ctx.settings.seed)
        a, b = as_operands([m[0] for m in members]), as_operands([m[1] for m in members])
        gen = generate(model, task, a, b)
        rule, truth = task.equivalent_answer(a, b), task.apply(a, b)
        columns, patterns = [], []
        for i, (x, y) in enumerate(members):
            tokens = gen.tokens[i, : task.n_ctx]
            pattern = attention_of(model, tokens)
            patterns.append(pattern)
            kind = "ID" if i == 0 else "OOD"
            caption = (
                f"{kind}: {task.describe(str(x), str(y))}: model {int(gen.answers[i])}, "
                f"true {int(truth[i])}, rule {int(rule[i])}"
            )
            columns.append(
                f'<figure class="attn"><figcaption>{escape(caption)}</figcaption>'
                f"{ctx.attention(pattern, token_labels(task, tokens), names)}</figure>"
            )
        html.append(f"<h3>{escape(task.describe(str(members[0][0]), str(members[0][1])))} and its class</h3>")
        html.append('<div class="side-by-side">' + "".join(columns) + "</div>")
        answer_rows = slice(task.prompt_len - 1, task.n_ctx)  # positions that predict answer digits
        diffs = [
            [f"{task.describe(str(x), str(y))}"]
            + [
                f"{(p[k, answer_rows] - patterns[0][k, answer_rows]).abs().sum(-1).max().item() / 2:.3f}"
                for k in range(L * H)
            ]
            for (x, y), p in zip(members[1:], patterns[1:])
        ]
        if diffs:
            html.append(
                "<p>Largest total-variation distance between the OOD and the ID pattern, over the "
                "positions that predict answer digits (0: identical, 1: disjoint):</p>"
            )
            html.append(table(diffs, header=["OOD member"] + names, cls="grid"))
    return {"title": TITLE, "html": "\n".join(html)}
