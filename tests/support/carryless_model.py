"""A hand-set one-layer transformer that adds without carries, at any operand length (tests of numbers
of any size: predict, decoding, evaluation, relations and the CLI on 25- and 100-digit operands).

For the ``paper`` format (a and b zero-padded to W digits, most significant first, then the answer
units first), answer digit k is ``(a_k + b_k) mod 10`` for k < ``keep`` (default W) and 0 above: the
model answers ``(a mod 10^keep) + (b mod 10^keep)`` exactly when no digit sum below ``keep`` reaches
10, so with ``keep = W`` ``predict`` equals Python's ``a + b`` on carry-free pairs of any length.

Weights (residual = token one-hot, position one-hot, subspaces A, B, R of 10 each, and a flag Z):
head 0 moves the token of a's digit k into A, head 1 b's digit k into B (hard attention on position
one-hots), an MLP neuron per (i, j) fires when A holds i and B holds j and writes to R[(i + j) mod 10],
and the unembedding reads R. The positions predicting digits from ``keep`` up carry the flag Z, which
silences every neuron and is read as the digit 0. LayerNorm's affine map is the same at every other
answer position, so its constants are read off one forward pass and folded into the MLP's biases.
"""

from __future__ import annotations

import torch

from mechinterp_arith import ModelConfig, Task, build_model
from mechinterp_arith.core.tasks import SYMBOLS

BETA = 10.0  # attention sharpness (sharper scores make the plain forward and the bridge differ by > 1e-4)
FIRE = 12.0  # a neuron's pre-activation when both of its digits are present (GELU(-12) ~ 0)


def carryless_adder(task: Task, keep: int | None = None):
    """``(model, model_config)``: the hand-set model for ``task`` (``add``, ``paper``); see the module doc."""
    if task.op != "add" or task.format != "paper":
        raise ValueError("the carry-less adder reads the paper format of addition")
    W, P, A = task.width, task.n_ctx, task.answer_width
    keep = W if keep is None else keep
    tok, pos = 0, 10  # coordinates of the one-hot token and position
    sub_a, sub_b, sub_r, flag = pos + P, pos + P + 10, pos + P + 20, pos + P + 30
    d_head = (flag + 2) // 2  # two heads; a head's keys index the W digits of one operand
    cfg = ModelConfig(n_layers=1, n_heads=2, d_model=2 * d_head, d_mlp=100, n_ctx=P, d_vocab=10, seed=0)
    model = build_model(cfg, device="cpu", task=task)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for name in ("blocks.0.ln1.weight", "blocks.0.ln2.weight", "ln_final.weight"):
        sd[name] = torch.ones_like(sd[name])
    sd["embed.weight"][:, tok : tok + 10] = torch.eye(10)
    sd["pos_embed.weight"][:, pos : pos + P] = torch.eye(P)
    q, k, v, o = (sd[f"blocks.0.attn.{x}.weight"] for x in "qkvo")
    for head, first in ((0, 0), (1, W)):  # head 0 reads a (positions 0..W-1), head 1 b (W..2W-1)
        start = head * d_head
        for j in range(W):  # key: the digit's index within its operand, most significant first
            k[start + j, pos + first + j] = 1.0
        for place in range(min(A, keep)):  # the query predicting answer digit `place` sits at prompt_len - 1 + place
            q[start + W - 1 - place, pos + task.prompt_len - 1 + place] = BETA
        v[start : start + 10, tok : tok + 10] = torch.eye(10)
        target = sub_a if head == 0 else sub_b
        o[target : target + 10, start : start + 10] = torch.eye(10)
    sd["unembed.weight"][:, sub_r : sub_r + 10] = torch.eye(10)
    sd["unembed.weight"][0, flag] = 1.0
    for place in range(keep, A):
        sd["pos_embed.weight"][task.prompt_len - 1 + place, flag] = 1.0
    model.load_state_dict(sd)
    # the LayerNorm before the MLP maps a present digit to `high` and an absent one to `low`: read both
    probe, _ = task.encode_batch([0], [1])
    with torch.inference_mode():
        _, cache = model.run_with_cache(probe[:, :P])
    x = cache["blocks.0.ln2.hook_normalized"][0, task.prompt_len - 1]
    high, low = float(x[sub_b + 1]), float(x[sub_b + 2])  # b's units digit is 1, 2 is absent
    w = 2 * FIRE / (high - low)
    mlp_in, mlp_out, bias = sd["blocks.0.mlp.in.weight"], sd["blocks.0.mlp.out.weight"], sd["blocks.0.mlp.in.bias"]
    for i in range(10):
        for j in range(10):
            n = 10 * i + j
            mlp_in[n, sub_a + i] = mlp_in[n, sub_b + j] = w
            bias[n] = -w * (1.5 * high + 0.5 * low)
            mlp_in[n, flag] = -4 * w * high  # silenced where the flag is set
            mlp_out[sub_r + (i + j) % 10, n] = 1.0
    model.load_state_dict(sd)
    return model.eval(), cfg


def carry_free_pairs(m: int, n: int, seed: int = 0, keep: int | None = None) -> tuple[list[int], list[int]]:
    """``n`` pairs of exactly ``m``-digit operands whose digit sums stay below 10 at every place below
    ``keep`` (default all ``m``), drawn from a seeded generator; other places are uniform."""
    g = torch.Generator().manual_seed(seed)
    keep = m if keep is None else keep

    def digit(low: int, high: int) -> int:  # uniform in [low, high]
        return int(torch.randint(low, high + 1, (1,), generator=g))

    a, b = [], []
    for _ in range(n):
        x, y = [], []  # digits, units first
        for place in range(m):
            low = 1 if place == m - 1 else 0  # exactly m digits
            if place < keep:
                x.append(digit(low, 9 - low))
                y.append(digit(low, 9 - x[-1]))
            else:
                x.append(digit(low, 9))
                y.append(digit(low, 9))
        a.append(int("".join(map(str, reversed(x)))))
        b.append(int("".join(map(str, reversed(y)))))
    return a, b


def coupled_carryless_adder(task: Task, n_ctx: int):
    """``(model, model_config)``: a hand-set one-layer, one-head adder without carries under position
    coupling (``add``, ``reversed``, padded; the table has ``n_ctx`` rows). Its weights hold no width:
    on carry-free pairs it answers ``a + b`` at every width whose coupling IDs stay below ``n_ctx``
    (formats widened past ``task``'s, ``core/widening.py``).

    Weights (residual = token one-hot, ID one-hot, a sum subspace S, a result subspace R, a constant):
    the query at ID i (``=`` is 1, answer digit k-1 is k+1: the one predicting place i-1) attends to the
    keys with ID i+1, a's and b's digits of that place, or, where none is visible (the place past both
    operands), to ``+`` and ``=``; values write the digits' one-hots to S (half each for two different
    digits, one for two equal ones). MLP neurons: one per unordered digit pair {i, j}, one per equal
    pair (i, i), which outvotes the pairs {i, j} it also excites, and one for an empty S (digit 0), each
    writing (i + j) mod 10 to R. Their thresholds are read off LayerNorm's outputs on every digit pair.
    """
    if task.op != "add" or task.format != "reversed" or not task.pad or task.bos:
        raise ValueError("the coupled carry-less adder reads the padded reversed format of addition")
    V = task.d_vocab
    tok, pos = 0, V
    sub_s, sub_r, const = pos + n_ctx, pos + n_ctx + 10, pos + n_ctx + 20
    neurons: list[tuple[int, int] | None] = [(i, j) for i in range(10) for j in range(i, 10)] + [None]
    cfg = ModelConfig(
        n_layers=1, n_heads=1, d_model=const + 1, d_mlp=len(neurons), n_ctx=n_ctx, d_vocab=V, positional="coupling"
    )
    model = build_model(cfg, device="cpu", task=task)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for name in ("blocks.0.ln1.weight", "blocks.0.ln2.weight", "ln_final.weight"):
        sd[name] = torch.ones_like(sd[name])
    sd["embed.weight"][:, tok : tok + V] = torch.eye(V)
    sd["embed.weight"][:, const] = 1.0
    sd["pos_embed.weight"][:, pos : pos + n_ctx] = torch.eye(n_ctx)
    q, k, v, o = (sd[f"blocks.0.attn.{x}.weight"] for x in "qkvo")
    for r in range(1, n_ctx):  # the query at ID r - 1 matches the keys at ID r
        q[r, pos + r - 1] = BETA
        k[r, pos + r] = 1.0
    q[0, tok : tok + V] = BETA / 2  # query/key index 0 (free: no query has ID -1): the fallback keys + and =
    k[0, tok + SYMBOLS.index("+")] = k[0, tok + SYMBOLS.index("=")] = 1.0
    v[:10, tok : tok + 10] = torch.eye(10)
    o[sub_s : sub_s + 10, :10] = torch.eye(10)
    sd["unembed.weight"][:10, sub_r : sub_r + 10] = torch.eye(10)
    model.load_state_dict(sd)
    # LayerNorm's outputs in S where `=` predicts the units of a = i, b = j, and one place further (empty S)
    digits = torch.arange(10)
    tokens = task.encode_batch(digits.repeat_interleave(10), digits.repeat(10))[0][:, :-1]
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens)
    x = cache["blocks.0.ln2.hook_normalized"][:, task.prompt_len - 1 : task.prompt_len + 1, sub_s : sub_s + 10]
    cases = {(int(i), int(j)): x[10 * i + j, 0] for i in range(10) for j in range(10)}
    cases[None] = x[0, 1]  # type: ignore[index]
    mlp_in, bias, mlp_out = sd["blocks.0.mlp.in.weight"], sd["blocks.0.mlp.in.bias"], sd["blocks.0.mlp.out.weight"]
    for n, pair in enumerate(neurons):
        if pair is None:
            read, fire, either = -torch.ones(10), {None}, set()
            place = 0
        else:
            i, j = pair
            read = torch.zeros(10)
            read[i] += 1.0
            read[j] += 1.0 if i != j else 0.0
            fire, either = {(i, j), (j, i)}, ({(i, i), (j, j)} if i != j else set())
            place = (i + j) % 10
        scores = {c: float(read @ x_c) for c, x_c in cases.items()}
        high = min(scores[c] for c in fire)
        low = max(s_c for c, s_c in scores.items() if c not in fire and c not in either)
        assert high > low, (pair, high, low)
        w = 2 * FIRE / (high - low)
        mlp_in[n, sub_s : sub_s + 10] = w * read
        bias[n] = -w * (high + low) / 2
        mlp_out[sub_r + place, n] = 10.0 if pair is not None and pair[0] == pair[1] else 1.0
    model.load_state_dict(sd)
    return model.eval(), cfg
