"""Fast greedy decoding with a key/value cache, read straight from a bridge's weights.

:func:`evaluate.generate` runs the hooked bridge once per answer token over the whole prefix: the
right tool when hooks must fire, but slow for the 100,000-sample sets of the equivalence analysis.
Here the same weights run through plain PyTorch with a key/value cache (the prompt once, then one
position per answer token). No hooks fire. The answers agree with :func:`evaluate.generate`
(tested on add3, ID and OOD); logits agree to float rounding.

Supported: fixed-length formats and learned positional embeddings (the study's setting). For
anything else :func:`fast_generate` falls back to :func:`evaluate.generate`.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.ood_both(ckpt.task, m=4, n=100_000)
>>> answers = fast_generate(ckpt.model, ckpt.task, a, b).answers      # a few seconds on a CPU
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from .evaluate import DEFAULT_BATCH, Generation, generate
from .model import model_device
from .tasks import Task, _as_long

_ACT = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


def supports_fast_path(model, task: Task) -> bool:
    """Whether :func:`kv_greedy` can decode this model (learned positions, fixed-length format)."""
    cfg = model.cfg
    positional = getattr(cfg, "positional_embedding_type", "standard")
    sd = model.state_dict()
    return (
        task.fixed_length
        and positional == "standard"
        and getattr(cfg, "act_fn", None) in _ACT
        and getattr(cfg, "normalization_type", "LN") == "LN"
        and "pos_embed.weight" in sd
        and "blocks.0.attn.q.weight" in sd
    )


class _Weights:
    """The bridge's parameters as plain tensors (nn.Linear layout: weight [out, in])."""

    def __init__(self, model):
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        cfg = model.cfg
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.eps = float(getattr(cfg, "eps", 1e-5))
        self.act = _ACT[cfg.act_fn]
        self.embed, self.pos = sd["embed.weight"], sd["pos_embed.weight"]
        self.blocks = []
        for l in range(cfg.n_layers):
            p = lambda name: sd[f"blocks.{l}.{name}"]  # noqa: E731
            self.blocks.append({
                "ln1": (p("ln1.weight"), p("ln1.bias")),
                "qkv_w": torch.cat([p("attn.q.weight"), p("attn.k.weight"), p("attn.v.weight")]),
                "qkv_b": torch.cat([p("attn.q.bias"), p("attn.k.bias"), p("attn.v.bias")]),
                "o": (p("attn.o.weight"), p("attn.o.bias")),
                "ln2": (p("ln2.weight"), p("ln2.bias")),
                "in": (p("mlp.in.weight"), p("mlp.in.bias")),
                "out": (p("mlp.out.weight"), p("mlp.out.bias")),
            })
        self.ln_f = (sd["ln_final.weight"], sd["ln_final.bias"])
        self.unembed = sd["unembed.weight"]
        bias = sd.get("unembed.bias")
        self.unembed_b = bias if bias is not None else torch.zeros(self.unembed.shape[0], device=self.unembed.device)
        if tuple(self.unembed.shape) != (cfg.d_vocab_out, cfg.d_model):
            raise ValueError(f"unexpected unembed.weight shape {tuple(self.unembed.shape)}")


def _block(w: dict, x: Tensor, cache: list | None, weights: _Weights, step: bool) -> Tensor:
    B, T, D = x.shape
    H, dh = weights.n_heads, weights.d_head
    h = F.layer_norm(x, (D,), *w["ln1"], eps=weights.eps)
    q, k, v = F.linear(h, w["qkv_w"], w["qkv_b"]).split(D, dim=-1)
    q, k, v = (t.view(B, T, H, dh).transpose(1, 2) for t in (q, k, v))
    if step:  # one new position: attend to everything cached so far plus itself
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
        z = F.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(dh))
    else:  # written out: on CPU it beats the fused kernel for these tiny heads
        att = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(dh))
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1), float("-inf"))
        z = att.softmax(-1) @ v
    cache[:] = [k, v]
    x = x + F.linear(z.transpose(1, 2).reshape(B, T, D), *w["o"])
    h = F.layer_norm(x, (D,), *w["ln2"], eps=weights.eps)
    return x + F.linear(weights.act(F.linear(h, *w["in"])), *w["out"])


def _logits(weights: _Weights, x: Tensor) -> Tensor:
    h = F.layer_norm(x, (x.shape[-1],), *weights.ln_f, eps=weights.eps)
    return F.linear(h, weights.unembed, weights.unembed_b)


@torch.inference_mode()
def kv_greedy(
    model, prompt: Int[Tensor, "batch prompt"], n_new: int, return_logits: bool = False
) -> tuple[Int[Tensor, "batch prompt+n_new"], Float[Tensor, "batch n_new vocab"] | None]:
    """Greedy continuation of each prompt row with a key/value cache.

    Returns ``(tokens, logits)``: the prompt with ``n_new`` tokens appended, and (when
    ``return_logits``) the logits that chose each new token (``logits[:, k]`` chose token
    ``prompt_len + k``), else None.
    """
    weights = _Weights(model)
    P = prompt.shape[1]
    if P + n_new - 1 > weights.pos.shape[0]:
        raise ValueError(f"prompt of {P} + {n_new} new tokens exceeds the model's context {weights.pos.shape[0]}")
    caches = [[] for _ in range(weights.n_layers)]
    x = weights.embed[prompt] + weights.pos[:P]
    for w, c in zip(weights.blocks, caches):
        x = _block(w, x, c, weights, step=False)
    last = _logits(weights, x[:, -1])
    new, kept = [], []
    for k in range(n_new):
        tok = last.argmax(-1)
        new.append(tok)
        if return_logits:
            kept.append(last)
        if k == n_new - 1:
            break
        x = (weights.embed[tok] + weights.pos[P + k]).unsqueeze(1)
        for w, c in zip(weights.blocks, caches):
            x = _block(w, x, c, weights, step=True)
        last = _logits(weights, x[:, -1])
    tokens = torch.cat([prompt, torch.stack(new, dim=1)], dim=1)
    return tokens, (torch.stack(kept, dim=1) if return_logits else None)


def fast_generate(model, task: Task, a, b, batch_size: int = 16_384) -> Generation:
    """Like :func:`evaluate.generate` (same answers), through :func:`kv_greedy` when supported.

    Falls back to :func:`evaluate.generate` for unpadded formats or rotary models.
    """
    a, b = _as_long(a), _as_long(b)
    task.check_operands(a, b)
    if not supports_fast_path(model, task):
        return generate(model, task, a, b, batch_size=min(batch_size, DEFAULT_BATCH))
    device = model_device(model)
    answers, rows = [], []
    for i in range(0, len(a), batch_size):
        tokens, _ = task.encode_batch(a[i : i + batch_size], b[i : i + batch_size])
        out, _ = kv_greedy(model, tokens[:, : task.prompt_len].to(device), task.answer_width)
        out = out.cpu()
        rows.append(out)
        answers.append(task.decode_answer(out[:, task.prompt_len :]))
    if not rows:
        return Generation(torch.zeros(0, dtype=torch.long), torch.zeros(0, task.prompt_len + task.answer_width, dtype=torch.long))
    return Generation(torch.cat(answers), torch.cat(rows))
