"""The model's forward as plain tensor ops, read from a bridge's weights (no hooks fire).

Two fast paths share it: key/value-cached greedy decoding (:mod:`mechinterp_arith.core.decoding`,
the equivalence analysis's 100,000-sample sets) and batched activation patching
(:mod:`mechinterp_arith.analysis.patching`, which restarts the forward at any (layer, position)).
Supported: the pre-LN GPT that :mod:`mechinterp_arith.core.model` builds, under every position
scheme (learned or rotary positions, IDs and hidden padding from the model's
:class:`~mechinterp_arith.core.position_schemes.PositionRule`, see :meth:`PlainGPT.numbering`),
and the models the importer produces. Callers check it against the bridge's logits before trusting it.

A partial forward runs a :class:`Segment`: layers from ``layer`` on, residual rows of positions
from ``start`` on, attending earlier positions through a *past*:

``None``               the rows hold every position from 0 (``start == 0``);
:class:`SharedPrefix`  keys/values of positions ``< start`` from one run, shared (never copied) by
                       ``variants`` patched copies of the batch stacked along the rows;
:class:`KVBuffer`      per-row key/value buffers that new positions are written into (decoding).

>>> from mechinterp_arith import load
>>> ckpt = load("add3")
>>> plain = PlainGPT(ckpt.model)
>>> tokens, _ = ckpt.task.encode_batch([349], [705])
>>> logits, cache = plain.run(tokens[:, :-1])    # the model's input: every token but the last
>>> logits.shape, cache[("k", 0)].shape          # [batch, pos, vocab], [batch, head, pos, d_head]
(torch.Size([1, 15, 10]), torch.Size([1, 3, 15, 16]))
>>> x = plain.blocks(cache[("resid_pre", 2)][:, 9:], Segment(layer=2, start=9, past=SharedPrefix(
...     {2: cache[("k", 2)][:, :, :9]}, {2: cache[("v", 2)][:, :, :9]})))   # layer 2, positions 9..14
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from .plain_attention import KVBuffer, Numbering, Rotary, SharedPrefix, causal_attention
from .position_schemes import position_rule

_GELU_TANH_K = 2 * math.sqrt(2 / math.pi)
# a PlainGPT whose logits differ from the bridge's by more than MAX_LOGIT_DIFF + LOGIT_RTOL * |logit|
# is not used (float32 rounding grows with the logits' size: ~8e-5 at logits of ~28 on mul3)
MAX_LOGIT_DIFF, LOGIT_RTOL = 1e-4, 1e-5


def gelu_tanh(x: Float[Tensor, ...]) -> Float[Tensor, ...]:
    """GELU, tanh form (minGPT's ``NewGELU``), as ``x * sigmoid(2c(x + 0.044715 x^3))``.

    The same function as ``F.gelu(x, approximate="tanh")`` (0.5(1 + tanh z) == sigmoid(2z)), to
    float rounding (max difference ~5e-7), and 2-3x faster on CPUs where torch's tanh is slow.
    In place on a temporary, so with autograd on it is ``F.gelu`` itself.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return F.gelu(x, approximate="tanh")
    u = x * x
    u.mul_(0.044715 * _GELU_TANH_K).add_(_GELU_TANH_K).mul_(x)
    return u.sigmoid_().mul_(x)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}

# ``patch(point, layer, t)``: t is the activation, or (attn_out, z) for the point "result"
Patch = Callable[[str, int, Any], None]
# activations collected by a forward, keyed (point, layer)
PlainCache = dict[tuple[str, int], Tensor]
"""``patch(point, layer, activation)``: edits a plain-forward activation in place."""


def unsupported_reasons(model: torch.nn.Module) -> list[str]:
    """Why :class:`PlainGPT` cannot run this model (empty when it can)."""
    cfg: Any = model.cfg
    sd_keys = set(model.state_dict().keys())
    reasons = []
    positional = getattr(cfg, "positional_embedding_type", "standard")
    if positional == "standard" and "pos_embed.weight" not in sd_keys:
        reasons.append("no position table (pos_embed.weight)")
    elif positional == "rotary" and Rotary.of(model) is None:
        reasons.append("rotary positions without the bridge's rotary tables (original_model.rotary)")
    elif positional not in ("standard", "rotary"):
        reasons.append(f"positional_embedding_type={positional}")
    if getattr(cfg, "normalization_type", "LN") != "LN":
        reasons.append(f"normalization_type={cfg.normalization_type}")
    if getattr(cfg, "act_fn", None) not in ACTIVATIONS:
        reasons.append(f"act_fn={getattr(cfg, 'act_fn', None)}")
    for flag in ("attn_only", "parallel_attn_mlp", "gated_mlp"):
        if getattr(cfg, flag, False):
            reasons.append(flag)
    if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
        reasons.append("grouped-query attention")
    if "blocks.0.attn.q.weight" not in sd_keys:
        reasons.append("no split q/k/v weights (blocks.0.attn.q.weight)")
    return reasons


Past = SharedPrefix | KVBuffer | None


@dataclass(frozen=True)
class Segment:
    """Where a partial forward starts: the first ``layer`` it runs, the position ``start`` of the
    first residual row it is given, and the ``past`` that holds the keys/values of earlier
    positions (None when ``start == 0``)."""

    layer: int = 0
    start: int = 0
    past: Past = None


class PlainGPT:
    """A bridge's pre-LN GPT forward as plain tensor ops that can start at any (layer, position).

    A snapshot of the parameters (q/k/v are fused): build a new one after the weights change, or
    use :func:`checked_plain_forward`, which does. Raises NotImplementedError naming what it
    cannot run (see :func:`unsupported_reasons`).
    """

    def __init__(self, model: TransformerBridge) -> None:
        reasons = unsupported_reasons(model)
        if reasons:
            raise NotImplementedError(", ".join(reasons))
        # normal tensors even when built under inference mode: gradients may flow through them
        with torch.inference_mode(False), torch.no_grad():
            self._read_weights(model)

    def _read_weights(self, model: TransformerBridge) -> None:
        cfg = model.cfg
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        self.L, self.H, self.dh, self.D = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
        self.eps = float(getattr(cfg, "eps", 1e-5))
        self.act = ACTIVATIONS[cfg.act_fn]
        self.scale = 1.0 / math.sqrt(cfg.d_head) if getattr(cfg, "use_attn_scale", True) else 1.0
        self.W_O = model.W_O.detach()  # [L, H, dh, D]

        def bias(name: str, n: int) -> Tensor:
            t = sd.get(name)
            return t if t is not None else torch.zeros(n, device=sd["embed.weight"].device)

        self.embed, self.pos = sd["embed.weight"], sd.get("pos_embed.weight")  # no table: rotary
        self.rotary = Rotary.of(model) if cfg.positional_embedding_type == "rotary" else None
        self.rule = position_rule(model)
        self._numbered: tuple[Tensor, Numbering] | None = None
        self.n_ctx = int(cfg.n_ctx)
        self.layers = []
        for l in range(cfg.n_layers):
            p = f"blocks.{l}."

            def w(name: str, p: str = p) -> Tensor:
                return sd[p + name]

            qkv = [w(f"attn.{x}.weight") for x in "qkv"]
            self.layers.append(
                {
                    "ln1": (w("ln1.weight"), w("ln1.bias")),
                    "qkv": (
                        torch.cat(qkv),
                        torch.cat([bias(f"{p}attn.{x}.bias", t.shape[0]) for x, t in zip("qkv", qkv)]),
                    ),
                    "o": (w("attn.o.weight"), bias(p + "attn.o.bias", self.D)),
                    "ln2": (w("ln2.weight"), w("ln2.bias")),
                    "in": (w("mlp.in.weight"), bias(p + "mlp.in.bias", w("mlp.in.weight").shape[0])),
                    "out": (w("mlp.out.weight"), bias(p + "mlp.out.bias", self.D)),
                }
            )
        self.ln_final = (sd["ln_final.weight"], sd["ln_final.bias"])
        self.unembed = sd["unembed.weight"]
        if tuple(self.unembed.shape) != (cfg.d_vocab_out, cfg.d_model):
            raise NotImplementedError(f"unembed.weight of shape {tuple(self.unembed.shape)}")
        self.unembed_b = bias("unembed.bias", self.unembed.shape[0])

    @property
    def context(self) -> int:
        """Tokens a row may hold: the model's ``n_ctx`` (a table indexed by token index caps it at its rows;
        a position rule's IDs index the table instead, and stay below its rows)."""
        return self.pos.shape[0] if self.pos is not None and self.rule is None else self.n_ctx

    def numbering(self, tokens: Int[Tensor, "batch pos"]) -> Numbering:
        """The position IDs and key visibility the model gives ``tokens``: its position rule's
        (:meth:`PositionRule.numbering`, the one computation of them), else 0, 1, 2, ... with every
        token visible (learned, nope, rotary)."""
        if self.rule is None:
            return Numbering()
        last = self._numbered
        same = last is not None and last[0].shape == tokens.shape and last[0].device == tokens.device
        if last is None or not (same and torch.equal(last[0], tokens)):
            with torch.inference_mode(False):  # normal tensors: gradients may be taken through their uses
                self._numbered = last = (tokens.clone(), Numbering.of(*self.rule.numbering(tokens)))
        return last[1]  # the last tokens' again (the sweeps of a patching session share their inputs)

    def embed_tokens(
        self, tokens: Int[Tensor, "batch pos"], start: int = 0, ids: Int[Tensor, "#batch pos"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """Token plus positional embedding of ``tokens`` placed at positions ``start..``, with
        position IDs ``ids`` ([batch or 1, pos]; default: the positions themselves); rotary models add no table."""
        end = start + tokens.shape[1]
        if end > self.context:
            raise ValueError(f"input length {end} exceeds the model's context of {self.context} positions")
        if self.pos is None:
            return self.embed[tokens]
        return self.embed[tokens] + (self.pos[start:end] if ids is None else self.pos[ids])

    @torch.inference_mode()
    def run(self, tokens: Int[Tensor, "batch pos"]) -> tuple[Float[Tensor, "batch pos vocab"], PlainCache]:
        """Full forward; returns logits and a cache keyed ``(point, layer)`` with points resid_pre,
        k, v ([B, H, pos, dh], k after any rotary rotation), z ([B, pos, H, dh]), attn_out,
        resid_mid, mlp_out, resid_post."""
        cache: PlainCache = {}
        numbering = self.numbering(tokens)
        x = self.blocks(self.embed_tokens(tokens, ids=numbering.ids), cache=cache, numbering=numbering)
        return self.logits(x), cache

    def blocks(
        self,
        x: Float[Tensor, "rows q d_model"],
        segment: Segment = Segment(),
        *,
        patch: Patch | None = None,
        cache: PlainCache | None = None,
        last_only: bool = False,
        numbering: Numbering | None = None,
    ) -> Float[Tensor, "rows q_out d_model"]:
        """Run layers ``segment.layer..`` on the residual ``x`` of positions ``segment.start..``;
        earlier positions are attended through ``segment.past``.

        ``patch(point, layer, t)`` may edit activations in place; ``cache`` (a dict) collects them.
        ``last_only``: the last layer computes only the final position (its keys/values still come
        from every position). ``numbering``: the rows' position IDs (rotary) and key visibility
        (:meth:`numbering` of their tokens, rows as ``x``'s; None: 0, 1, 2, ..., all visible). Returns the final residual stream
        (before ln_final).
        """
        N, Q, D = x.shape
        H, dh = self.H, self.dh
        start, numbering = segment.start, numbering or Numbering()
        ids = numbering.ids_at(start, start + Q, x.device) if self.rotary is not None else None
        visible = numbering.visible_keys(start + Q)
        for j in range(segment.layer, self.L):
            w = self.layers[j]
            if patch:
                patch("resid_pre", j, x)
            if cache is not None:
                cache[("resid_pre", j)] = x
            h = F.layer_norm(x, (D,), *w["ln1"], self.eps)
            q, k, v = (t.view(N, Q, H, dh).transpose(1, 2) for t in F.linear(h, *w["qkv"]).split(D, dim=-1))
            if self.rotary is not None and ids is not None:
                q, k = self.rotary(q, ids), self.rotary(k, ids)
            if cache is not None:
                cache[("k", j)], cache[("v", j)] = k, v
            if last_only and j == self.L - 1 and Q > 1:  # keys/values of all, queries of the last
                z = self._attend(j, q, k, v, segment, visible, last_query=True)
                x = x[:, -1:]
            else:
                z = self._attend(j, q, k, v, segment, visible)
            z = z.transpose(1, 2).contiguous()  # [N, Q, H, dh]
            if cache is not None:
                cache[("z", j)] = z
            x = self.finish_layer(j, x, z, patch=patch, cache=cache)
        return x

    def _attend(
        self,
        j: int,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        segment: Segment,
        visible: Bool[Tensor, "rows keys"] | None,
        last_query: bool = False,
    ) -> Tensor:
        past, start = segment.past, segment.start
        q = q[:, :, -1:] if last_query else q
        if isinstance(past, KVBuffer):
            return past.attend(j, q, k, v, start, self.scale, visible)
        if past is None:
            if start:
                raise ValueError(f"positions from {start} need a past (keys/values of earlier positions)")
            return causal_attention(q, k, v, self.scale, visible)
        return past.attend(j, q, k, v, start, self.scale, visible)

    def finish_layer(
        self,
        j: int,
        x: Tensor,
        z: Float[Tensor, "rows q head d_head"],
        *,
        patch: Patch | None = None,
        cache: PlainCache | None = None,
    ) -> Tensor:
        """Layer ``j`` from its heads' z onwards: W_O, residual, MLP; returns resid_post."""
        N, Q, D = x.shape
        w = self.layers[j]
        if patch:
            patch("z", j, z)
        attn_out = F.linear(z.reshape(N, Q, D), *w["o"])
        if patch:
            patch("result", j, (attn_out, z))
            patch("attn_out", j, attn_out)
        x = x + attn_out
        if patch:
            patch("resid_mid", j, x)
        mlp_out = self.mlp(j, x)
        if patch:
            patch("mlp_out", j, mlp_out)
        if cache is not None:
            cache[("attn_out", j)], cache[("resid_mid", j)], cache[("mlp_out", j)] = attn_out, x, mlp_out
        x = x + mlp_out
        if patch:
            patch("resid_post", j, x)
        if cache is not None:
            cache[("resid_post", j)] = x
        return x

    def mlp(self, j: int, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """Layer ``j``'s MLP output (ln2 included) for the residual it reads."""
        w = self.layers[j]
        h = F.layer_norm(resid_mid, (resid_mid.shape[-1],), *w["ln2"], self.eps)
        return F.linear(self.act(F.linear(h, *w["in"])), *w["out"])

    def logits(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab"]:
        """ln_final and unembedding of a final residual stream."""
        h = F.layer_norm(x, (x.shape[-1],), *self.ln_final, eps=self.eps)
        return F.linear(h, self.unembed, self.unembed_b)


_CHECKED: weakref.WeakKeyDictionary[TransformerBridge, tuple[WeightsVersion, PlainGPT | None]] = (
    weakref.WeakKeyDictionary()
)
WeightsVersion = tuple[tuple[int, int, float], ...]


def weights_version(model: TransformerBridge) -> WeightsVersion:
    """Changes whenever a parameter is replaced or modified in place: its storage, version counter
    and sum (fused optimizers, such as the training loop's AdamW, update parameters in place without
    bumping their version counters). One host sync."""
    params = list(model.parameters())
    sums = torch.stack([p.detach().sum() for p in params]).tolist() if params else []
    return tuple((p.data_ptr(), p._version, s) for p, s in zip(params, sums))


def has_hooks(model: TransformerBridge) -> bool:
    """Whether a forward hook is attached to any of the model's TL hook points.

    (The bridge wires its own capture pre-hooks into wrapped modules on the first forward; those
    are not hook points and do not count.)
    """
    hook_points = getattr(model, "hook_dict", {}).values()
    return any(h._forward_hooks or h._forward_pre_hooks for h in hook_points)


def checked_plain_forward(model: TransformerBridge, probe_tokens: Int[Tensor, "batch pos"]) -> PlainGPT | None:
    """The model's :class:`PlainGPT`, or None when it must not stand in for the bridge.

    Built once per set of weights (see :func:`weights_version`) and checked then against the
    bridge's own logits on ``probe_tokens`` (within ``MAX_LOGIT_DIFF + LOGIT_RTOL * |logit|``). None when
    the architecture is unsupported, the check fails, or hooks are attached to the model (the
    plain forward would not fire them).
    """
    if has_hooks(model):
        return None
    version = weights_version(model)
    hit = _CHECKED.get(model)
    if hit is not None and hit[0] == version:
        return hit[1]
    try:
        plain = PlainGPT(model)
    except NotImplementedError:
        plain = None
    if plain is not None:
        with torch.inference_mode():
            ref = model(probe_tokens)
            ours, _ = plain.run(probe_tokens)
        if not torch.allclose(ours, ref, atol=MAX_LOGIT_DIFF, rtol=LOGIT_RTOL):
            plain = None
    if not model.training:  # train mode may add dropout noise: check again next time
        _CHECKED[model] = (version, plain)
    return plain
