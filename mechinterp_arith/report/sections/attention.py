"""Attention patterns (circuitsvis) of ID inputs beside members of their OOD equivalence class.

The study's finding: an OOD input such as 1349+705 is answered as its ID representative 349+705.
If the model ignores the extra digits, its attention at the answer positions should match too.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ...evaluate import generate
from ..context import ReportContext, escape, table
from .common import mod_rule

TITLE = "Attention patterns: ID inputs and their OOD class members"
ID_EXAMPLES = ((349, 705), (567, 489))


def class_members(task, a: int, b: int) -> list[tuple[int, int]]:
    """An ID pair and OOD pairs with the same operands mod 10^n, e.g. 349+705, 1349+705, 5349+2705."""
    N, limit = 10**task.digits, 10**task.width
    a, b = a % N, b % N
    members = [(a, b), (a + N, b), (a + 5 * N, b + 2 * N)]
    out = []
    for x, y in members:
        if task.op == "sub":
            x, y = max(x, y), min(x, y)
        if x < limit and y < limit and (x, y) not in out:
            out.append((x, y))
    return out


def token_labels(task, tokens: Int[Tensor, "pos"]) -> list[str]:
    """Readable labels: ``a4:0 ... a0:9 b4:0 ... c0:4`` in the paper format, symbols otherwise."""
    toks = [task.vocab[t] for t in tokens.tolist()]
    if task.format != "paper":
        return [f"{i}:{t}" for i, t in enumerate(toks)]
    W = task.width
    roles = [f"a{W - 1 - i}" for i in range(W)] + [f"b{W - 1 - i}" for i in range(W)]
    roles += [f"c{k}" for k in range(len(toks) - 2 * W)]
    return [f"{r}:{t}" for r, t in zip(roles, toks)]


@torch.inference_mode()
def attention_of(model, tokens: Int[Tensor, "pos"]) -> Float[Tensor, "layer_head dest src"]:
    """Every head's pattern for one sequence, layers then heads: [n_layers * n_heads, pos, pos]."""
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens.unsqueeze(0), names_filter=lambda n: n in names)
    return torch.cat([cache[n][0] for n in names]).float().cpu()


def section(ctx: ReportContext) -> dict:
    ckpt, task = ctx.ckpt, ctx.ckpt.task
    model, L, H = ckpt.model, ckpt.model_config.n_layers, ckpt.model_config.n_heads
    names = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    if not task.fixed_length:
        return {"title": TITLE, "html": "<p>Attention views need a fixed-length (padded) format.</p>"}
    html = [f"<p>Each view shows all {L * H} heads over the sequence the model reads while answering "
            f"(the prompt and its own generated answer digits; <code>aK</code>/<code>bK</code> is the "
            f"10<sup>K</sup> digit of an operand, <code>cK</code> of the answer). Select a head to enlarge it.</p>"]
    for a0, b0 in ID_EXAMPLES:
        members = class_members(task, a0, b0)
        a = torch.tensor([m[0] for m in members])
        b = torch.tensor([m[1] for m in members])
        gen = generate(model, task, a, b)
        rule, truth = mod_rule(task, a, b), task.apply(a, b)
        columns, patterns = [], []
        for i, (x, y) in enumerate(members):
            tokens = gen.tokens[i, : task.n_ctx]
            pattern = attention_of(model, tokens)
            patterns.append(pattern)
            kind = "ID" if i == 0 else "OOD"
            caption = (f"{kind}: {task.describe(str(x), str(y))}: model {int(gen.answers[i])}, "
                       f"true {int(truth[i])}, rule {int(rule[i])}")
            columns.append(f'<figure class="attn"><figcaption>{escape(caption)}</figcaption>'
                           f"{ctx.attention(pattern, token_labels(task, tokens), names)}</figure>")
        html.append(f'<h3>{escape(task.describe(str(members[0][0]), str(members[0][1])))} and its class</h3>')
        html.append('<div class="side-by-side">' + "".join(columns) + "</div>")
        answer_rows = slice(task.prompt_len - 1, task.n_ctx)  # positions that predict answer digits
        diffs = [[f"{task.describe(str(x), str(y))}"] +
                 [f"{(p[k, answer_rows] - patterns[0][k, answer_rows]).abs().sum(-1).max().item() / 2:.3f}"
                  for k in range(L * H)]
                 for (x, y), p in zip(members[1:], patterns[1:])]
        if diffs:
            html.append("<p>Largest total-variation distance between the OOD and the ID pattern, over the "
                        "positions that predict answer digits (0: identical, 1: disjoint):</p>")
            html.append(table(diffs, header=["OOD member"] + names, cls="grid"))
    return {"title": TITLE, "html": "\n".join(html)}
