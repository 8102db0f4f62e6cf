"""The forward pass over TL's edge graph: every reader rebuilt from its writers, many circuits at once.

The pre-LN residual stream is a sum, so a reader's input (a head's q/k/v input or an MLP's input,
before its LayerNorm, or the final residual the logits read) is the corrupted run's residual there
plus, for each writer before it, ``keep * (live - corrupted)`` of that writer's contribution. With
``keep`` 1 for an edge in the circuit and 0 outside it, a run on the clean input is TL's
``faithfulness`` ablation (every edge outside the circuit gets the corrupted run's contribution),
computed for ``S`` circuits and a whole batch of pairs in one pass; with every edge kept it is the
clean run. Reader inputs can also take gradients (:func:`reader_gradients`), which is what edge
attribution patching (EAP) and its integrated-gradient form (EAP-IG) need.

Layout: tensors are ``[S, pos, ..., batch, d_model]`` (circuit or path step first, then the
positions ``start..end-1`` the graph forward computes). Positions before ``start`` (the first
position where any pair differs in a token, a position ID or a hidden token) are identical in both
runs: their keys and values come from the corrupted run.

Position schemes: the token-embedding writer holds the token's position embedding too (the whole
input embedding, ``hook_embed + hook_pos_embed``; TL's ``embed`` node is ``hook_embed``), so where
a rule numbers the clean and corrupted tokens differently (abacus and coupling IDs follow the
operands' lengths) the difference travels along the embedding's edges. Heads attend with the clean
input's rotary angles and attention mask (the tokens abacus and coupling hide), so every edge kept
is the clean run exactly, and no edge kept the corrupted run exactly (every reader then reads the
corrupted residual). Where the two inputs hide different tokens (an operand that changes length),
a head writes a different output even from corrupted inputs; that difference travels along its
kept edges (:attr:`PairRuns.rewired` marks those query positions).

>>> from mechinterp_arith import load
>>> from mechinterp_arith.analysis.edge_graph import EdgeGraph
>>> from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit
>>> from mechinterp_arith.core.plain_forward import PlainGPT
>>> ckpt = load("add3")
>>> plain, pairs = PlainGPT(ckpt.model), differ_in_answer_digit(ckpt.task, k=1, n=8)
>>> graph = EdgeGraph(n_layers=3, n_heads=3, n_pos=15)
>>> runs = PairRuns.build(plain, pairs.clean_tokens, pairs.corrupted_tokens, end=10)
>>> keep = graph.feeds.expand(1, runs.n_pos, -1, -1).float()      # every edge: the clean run
>>> logits = ablated_logits(plain, graph, runs, keep)               # [circuits, batch, pos, vocab]
>>> logits.shape[0], logits.shape[1], logits.shape[-1]
(1, 8, 10)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..core.plain_attention import Numbering, SharedPrefix, causal_attention
from ..core.plain_forward import PlainCache, PlainGPT
from .edge_graph import EdgeGraph

# the input of a group of readers: ("attn", layer) (its q/k/v), ("mlp", layer), or "final" (the logits)
ReaderGroup = tuple[str, int] | str


@dataclass
class PairRuns:
    """Clean and corrupted runs of a batch of prompt pairs, cut to positions ``start..end-1``.

    ``clean``/``corrupted``: writer contributions ``[pos, W, B, D]`` (token embedding, each head's
    output through W_O without its bias, each MLP's output). ``resid``: the corrupted residual
    each reader group adds deltas to: ``("attn", l)`` resid_pre, ``("mlp", l)`` resid_mid,
    ``"final"`` the last resid_post, each ``[pos, B, D]``. ``keys``/``values``: the corrupted
    run's per-layer keys/values ``[B, H, start, dh]`` of the positions before ``start``.
    ``numbering``: the clean input's position IDs and visible tokens (the ablated runs' own).
    ``differing``/``rewired`` [n_total]: positions whose input embedding (token or position ID)
    differs in some pair / whose queries see a key hidden in one input and not the other.
    """

    start: int
    end: int
    n_total: int  # the pairs' token length (positions of the full logits)
    clean: Tensor
    corrupted: Tensor
    resid: dict[ReaderGroup, Tensor]
    keys: dict[int, Tensor]
    values: dict[int, Tensor]
    numbering: Numbering
    differing: Bool[Tensor, " n_total"]
    rewired: Bool[Tensor, " n_total"]

    @property
    def n_pos(self) -> int:
        return self.end - self.start

    @property
    def batch(self) -> int:
        return self.clean.shape[2]

    @staticmethod
    def build(
        plain: PlainGPT,
        clean_tokens: Int[Tensor, "batch pos"],
        corrupted_tokens: Int[Tensor, "batch pos"],
        end: int | None = None,
    ) -> PairRuns:
        """Runs both inputs; ``end`` (default: every position) is one past the last position computed."""
        if clean_tokens.shape != corrupted_tokens.shape:
            raise ValueError(
                f"clean and corrupted tokens differ in shape: {tuple(clean_tokens.shape)} vs "
                f"{tuple(corrupted_tokens.shape)}"
            )
        P = clean_tokens.shape[1]
        end = P if end is None else end
        numberings = [plain.numbering(tokens) for tokens in (clean_tokens, corrupted_tokens)]
        differing = (clean_tokens != corrupted_tokens).any(0)
        id_differs, hidden_differs = numberings[0].differences(numberings[1], P, differing.device)
        differing |= id_differs
        rewired = hidden_differs.cummax(0).values  # queries at or after a key hidden differently
        changed = torch.nonzero(differing | hidden_differs).squeeze(1)
        if len(changed) == 0 or int(changed[0]) >= end:
            raise ValueError("no pair differs before the last position read: every edge is a no-op")
        start = int(changed[0])
        runs, contrib = [], []
        for tokens, numbering in zip((clean_tokens, corrupted_tokens), numberings):
            cache: PlainCache = {}
            with torch.no_grad():  # not inference mode: these tensors enter autograd graphs
                embedded = plain.embed_tokens(tokens[:, :end], ids=numbering.ids_at(0, end, tokens.device))
                plain.blocks(embedded, cache=cache, numbering=numbering)
            runs.append(cache)
            contrib.append(_contributions(plain, embedded, cache, start))
        cc = runs[1]
        resid: dict[ReaderGroup, Tensor] = {("attn", l): _pbd(cc[("resid_pre", l)], start) for l in range(plain.L)}
        resid.update({("mlp", l): _pbd(cc[("resid_mid", l)], start) for l in range(plain.L)})
        resid["final"] = _pbd(cc[("resid_post", plain.L - 1)], start)
        keys = {l: cc[("k", l)][:, :, :start] for l in range(plain.L)}
        values = {l: cc[("v", l)][:, :, :start] for l in range(plain.L)}
        return PairRuns(
            start, end, P, contrib[0], contrib[1], resid, keys, values, numberings[0], differing.cpu(), rewired.cpu()
        )


def _pbd(t: Tensor, start: int) -> Tensor:
    """[B, pos, D] -> [pos - start, B, D]."""
    return t[:, start:].transpose(0, 1).contiguous()


def _contributions(plain: PlainGPT, embedded: Tensor, cache: PlainCache, start: int) -> Float[Tensor, "pos W B D"]:
    parts = [embedded[:, start:, None]]
    for l in range(plain.L):
        z = cache[("z", l)][:, start:]  # [B, pos, H, dh]
        parts.append(torch.einsum("bphe,hed->bphd", z, plain.W_O[l]))
        parts.append(cache[("mlp_out", l)][:, start:, None])
    return torch.cat(parts, dim=2).permute(1, 2, 0, 3).contiguous()


def ablated_logits(
    plain: PlainGPT,
    graph: EdgeGraph,
    runs: PairRuns,
    keep: Float[Tensor, "S pos R W"] | None,
    embed_scale: Float[Tensor, " S"] | None = None,
    leaves: dict[ReaderGroup, Tensor] | None = None,
) -> Float[Tensor, "S B n_total vocab"]:
    """Logits of the clean input with each reader rebuilt from its writers: ``keep`` [S, pos, R, W]
    weighs each writer's clean-minus-corrupted contribution (1 = edge kept, 0 = ablated to the
    corrupted run); None keeps every edge. ``embed_scale`` [S] scales the token-embedding difference
    (the integrated-gradient path; default 1). ``leaves``: when a dict, a zero tensor that
    requires grad is added to every reader group's input and stored there (see
    :func:`reader_gradients`). Positions outside ``start..end-1`` hold NaN."""
    if keep is not None:
        S = keep.shape[0]
    elif embed_scale is not None:
        S = len(embed_scale)
    else:
        raise ValueError("give keep, embed_scale or both: they say how many variants S to run")
    P, B, D, H, W = runs.n_pos, runs.batch, plain.D, plain.H, graph.n_writers
    if keep is not None and tuple(keep.shape) != (S, P, graph.n_readers, W):
        raise ValueError(f"keep must be [S, {P}, {graph.n_readers}, {W}], got {tuple(keep.shape)}")
    scale = torch.ones(S) if embed_scale is None else embed_scale
    deltas = [scale.view(S, 1, 1, 1) * (runs.clean[:, 0] - runs.corrupted[:, 0])]  # per writer [S, pos, B, D]
    past = SharedPrefix(runs.keys, runs.values, variants=S) if runs.start else None
    numbering = runs.numbering.repeat(S)  # S copies of the clean rows (circuit-major)

    def reader_input(group: ReaderGroup, readers: list[int], n_writers: int, base: Tensor) -> Tensor:
        stacked = torch.stack(deltas[:n_writers], dim=2)  # [S, pos, w, B, D]
        if keep is None:
            x = (base + stacked.sum(2)).unsqueeze(2).expand(S, P, len(readers), B, D)
        else:
            k = keep[:, :, readers, :n_writers]  # [S, pos, r, w]
            x = base[:, None] + (k @ stacked.reshape(S, P, n_writers, B * D)).view(S, P, len(readers), B, D)
        if leaves is not None:
            leaves[group] = torch.zeros_like(x, requires_grad=True)
            x = x + leaves[group]
        return x

    for l in range(plain.L):
        attn = graph.attn_readers(l)
        x = reader_input(
            ("attn", l), list(range(attn.start, attn.stop)), graph.head_writer(l, 0), runs.resid[("attn", l)]
        )
        result = _heads(plain, l, x, past, runs.start, runs.end, numbering)  # [S, pos, H, B, D]
        corr = runs.corrupted[:, graph.head_writer(l, 0) : graph.head_writer(l, 0) + H]
        deltas += list((result - corr).unbind(2))
        x = reader_input(("mlp", l), [graph.mlp_reader(l)], graph.mlp_writer(l), runs.resid[("mlp", l)])[:, :, 0]
        deltas.append(plain.mlp(l, x) - runs.corrupted[:, graph.mlp_writer(l)])
    x = reader_input("final", [graph.logits_reader], W, runs.resid["final"])[:, :, 0]
    logits = plain.logits(x).permute(0, 2, 1, 3)  # [S, B, pos, V]
    pad = logits.new_full((S, B, runs.n_total, logits.shape[-1]), float("nan"))
    return torch.cat([pad[:, :, : runs.start], logits, pad[:, :, runs.end :]], dim=2)


def _heads(
    plain: PlainGPT,
    l: int,
    x: Float[Tensor, "S pos qkv_readers B D"],
    past: SharedPrefix | None,
    start: int,
    end: int,
    numbering: Numbering,
) -> Tensor:
    """Each head's output (through W_O, no bias) [S, pos, H, B, D] from its own q/k/v inputs, at
    positions ``start..end-1`` of rows numbered by ``numbering`` (S*B rows, circuit-major)."""
    S, P, _, B, D = x.shape
    H, dh = plain.H, plain.dh
    w_ln, b_ln = plain.layers[l]["ln1"]
    w_qkv, b_qkv = plain.layers[l]["qkv"]
    h = F.layer_norm(x, (D,), w_ln, b_ln, plain.eps).view(S, P, 3, H, B, D)
    w = w_qkv.view(3, H, dh, D)
    qkv = torch.einsum("spchbd,ched->scbhpe", h, w) + b_qkv.view(3, 1, H, 1, dh)  # [S, 3, B, H, pos, dh]
    q, k, v = (t.reshape(S * B, H, P, dh) for t in qkv.unbind(1))
    if plain.rotary is not None:
        ids = numbering.ids_at(start, end, q.device)
        q, k = plain.rotary(q, ids), plain.rotary(k, ids)
    visible = numbering.visible_keys(end)
    if past is not None:
        z = past.attend(l, q, k, v, start, plain.scale, visible)
    elif visible is None:
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=plain.scale)
    else:
        z = causal_attention(q, k, v, plain.scale, visible)
    out = torch.einsum("nhpe,hed->nphd", z, plain.W_O[l])  # [S*B, pos, H, D]
    return out.view(S, B, P, H, D).permute(0, 2, 3, 1, 4)


def reader_gradients(
    plain: PlainGPT,
    graph: EdgeGraph,
    runs: PairRuns,
    metric: Callable[[Tensor], Tensor],
    embed_scale: Float[Tensor, " S"],
) -> Float[Tensor, "S pos R B D"]:
    """d(metric)/d(reader input) on the full graph, for each step of the input path: the token
    embeddings are ``corrupted + embed_scale[s] * (clean - corrupted)`` (0 = the corrupted run).
    ``metric`` maps logits [B, pos, vocab] to a scalar (a batch mean)."""
    leaves: dict[ReaderGroup, Tensor] = {}
    with torch.enable_grad():
        logits = ablated_logits(plain, graph, runs, None, embed_scale=embed_scale, leaves=leaves)
        total = torch.stack([metric(logits[s]) for s in range(logits.shape[0])]).sum()
        order: list[ReaderGroup] = [("attn", l) for l in range(plain.L)]
        order += [("mlp", l) for l in range(plain.L)]
        order.append("final")
        grads = dict(zip(order, torch.autograd.grad(total, [leaves[g] for g in order])))
    S, P, B, D = len(embed_scale), runs.n_pos, runs.batch, plain.D
    out = torch.zeros(S, P, graph.n_readers, B, D)
    for l in range(plain.L):
        out[:, :, graph.attn_readers(l)] = grads[("attn", l)]
        out[:, :, graph.mlp_reader(l)] = grads[("mlp", l)][:, :, 0]
    out[:, :, graph.logits_reader] = grads["final"][:, :, 0]
    return out
