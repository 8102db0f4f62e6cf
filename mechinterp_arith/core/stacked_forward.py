"""The training forward of K bridges of one architecture as one batched computation.

:class:`StackedForward` reads the parameters of K :class:`TransformerBridge` models, stacks them
along a leading "model" dimension on every call (so gradients land in each bridge's own
parameters: the models stay hooked bridges) and runs the pre-LN GPT forward with batched matmuls:
model k sees only its own tokens and weights. With K = 1 it is the fast forward of one model.

It computes the bridge's function to float rounding (checked against the bridge's logits when it
is built, see :func:`stacked_forward_for`), faster: LayerNorm affines and the attention scale are
folded into the following weights (weights are tiny, activations are not), the causal softmax is
:mod:`~mechinterp_arith.core.fast_ops`'s, and the last layer computes only the positions whose
logits the loss reads (keys and values still come from every position).

>>> from mechinterp_arith import Task, ModelConfig, build_model
>>> task = Task("add", 3)
>>> models = [build_model(ModelConfig.for_task(task, seed=s)) for s in (0, 1)]
>>> fwd = StackedForward(models)
>>> tokens = torch.zeros(2, 4, task.n_ctx - 1, dtype=torch.long)     # [K, batch, pos]
>>> fwd(tokens, first_position=8).shape                              # logits of positions 8..13
torch.Size([2, 4, 6, 10])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from .fast_ops import causal_mask, key_mask, masked_softmax
from .plain_attention import Rotary
from .plain_forward import unsupported_reasons
from .position_schemes import numbering_of, position_rule

_gelu_tanh = functools.partial(F.gelu, approximate="tanh")
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}
LAYER_WEIGHTS = (
    "ln1.weight",
    "ln1.bias",
    "attn.q.weight",
    "attn.q.bias",
    "attn.k.weight",
    "attn.k.bias",
    "attn.v.weight",
    "attn.v.bias",
    "attn.o.weight",
    "attn.o.bias",
    "ln2.weight",
    "ln2.bias",
    "mlp.in.weight",
    "mlp.in.bias",
    "mlp.out.weight",
    "mlp.out.bias",
)
# the stacked logits may differ from the bridge's by float rounding only (as PlainGPT's)
MAX_LOGIT_DIFF, LOGIT_RTOL = 1e-4, 1e-5


def stacked_unsupported_reasons(model: TransformerBridge) -> list[str]:
    """Why :class:`StackedForward` cannot run this model (empty when it can)."""
    reasons = list(unsupported_reasons(model))
    if model.cfg.act_fn not in ACTIVATIONS:
        reasons.append(f"act_fn={model.cfg.act_fn}")
    names = set(model.state_dict())
    needed = ["embed.weight", "ln_final.weight", "ln_final.bias", "unembed.weight"]
    needed += ["pos_embed.weight"] if model.cfg.positional_embedding_type == "standard" else []
    needed += [f"blocks.{j}.{n}" for j in range(model.cfg.n_layers) for n in LAYER_WEIGHTS]
    missing = [n for n in needed if n not in names]
    if missing:
        reasons.append(f"no {missing[0]}")
    return reasons


class StackedForward:
    """Logits of K same-architecture bridges on their own token batches, as one computation."""

    def __init__(self, models: Sequence[TransformerBridge]):
        if not models:
            raise ValueError("StackedForward needs at least one model")
        reasons = stacked_unsupported_reasons(models[0])
        if reasons:
            raise NotImplementedError(", ".join(reasons))
        shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("StackedForward needs models of one architecture")
        cfg = models[0].cfg
        self.models = list(models)
        self.n_heads, self.d_head, self.n_layers = cfg.n_heads, cfg.d_head, cfg.n_layers
        self.eps = float(getattr(cfg, "eps", 1e-5))
        self.act = ACTIVATIONS[cfg.act_fn]
        self.scale = 1.0 / math.sqrt(cfg.d_head) if getattr(cfg, "use_attn_scale", True) else 1.0
        self.tensors = [m.state_dict(keep_vars=True) for m in models]  # parameters by TL name (not copies)
        self.rotary = Rotary.of(models[0]) if cfg.positional_embedding_type == "rotary" else None
        self.rules = [position_rule(m) for m in models]

    def numbering(
        self, tokens: Int[Tensor, "K batch pos"]
    ) -> tuple[Int[Tensor, "K batch pos"] | None, Bool[Tensor, "K batch pos"] | None]:
        """``(position_ids, visible)`` each model gives its own tokens (its position rule's; None:
        0, 1, 2, ..., every token visible), as the bridges number them without being told."""
        if all(rule is None for rule in self.rules):
            return None, None
        ids, visible = zip(*(numbering_of(m, t) for m, t in zip(self.models, tokens)))
        return torch.stack(ids), torch.stack(visible)

    def weight(self, name: str) -> Float[Tensor, "K ..."]:
        """Parameter ``name`` of every model, stacked: ``[K, *shape]`` (differentiable)."""
        if len(self.tensors) == 1:
            return self.tensors[0][name].unsqueeze(0)
        return torch.stack([t[name] for t in self.tensors])

    def __call__(
        self,
        tokens: Int[Tensor, "K batch pos"],
        first_position: int = 0,
        position_ids: Int[Tensor, "K batch pos"] | None = None,
        visible: Bool[Tensor, "K batch pos"] | None = None,
    ) -> Float[Tensor, "K batch pos_out vocab"]:
        """Logits at positions ``first_position..pos-1`` of each model's tokens, numbered by
        ``position_ids`` (None: 0, 1, 2, ...) with the tokens ``visible`` hides never read (None:
        every token visible), as a bridge called with ``position_ids=`` and ``attention_mask=``.
        Without them the models number their tokens themselves: pass :meth:`numbering`'s."""
        K, B, T = tokens.shape
        if K != len(self.models):
            raise ValueError(f"tokens for {K} models, but the forward holds {len(self.models)}")
        if not 0 <= first_position < T:
            raise ValueError(f"first_position must be in [0, {T}), got {first_position}")
        for name, t in (("position_ids", position_ids), ("visible", visible)):
            if t is not None and tuple(t.shape) != (K, B, T):
                raise ValueError(f"{name} must be [{K}, {B}, {T}] like the tokens, got {tuple(t.shape)}")
        x = self._embed(tokens, position_ids)
        ids = None if position_ids is None else position_ids.reshape(K * B, T)
        masks: dict[int, tuple[Tensor, Tensor | None]] = {}
        for j in range(self.n_layers):
            first = first_position if j == self.n_layers - 1 else 0
            if first not in masks:
                masks[first] = self._masks(T - first, T, x, visible)
            x = self._layer(j, x, B, T, first, ids, masks[first])
        w_u = self.weight("unembed.weight")
        bias = self.tensors[0].get("unembed.bias")
        b_u = self.weight("unembed.bias") if bias is not None else torch.zeros_like(w_u[:, :, 0])
        logits = self._norm_linear(x, "ln_final", w_u, b_u)
        return logits.view(K, B, T - first_position, -1)

    def _embed(self, tokens: Int[Tensor, "K batch pos"], ids: Tensor | None) -> Float[Tensor, "K rows d_model"]:
        K, B, T = tokens.shape
        w_e = self.weight("embed.weight")  # [K, vocab, D]
        offsets = torch.arange(K, device=tokens.device).view(K, 1, 1)
        x = F.embedding(tokens + offsets * w_e.shape[1], w_e.reshape(-1, w_e.shape[-1]))  # [K, B, T, D]
        if self.rotary is None:
            w_p = self.weight("pos_embed.weight")  # [K, n_ctx, D]
            if ids is None:
                x = x + w_p[:, None, :T]
            else:
                x = x + F.embedding(ids + offsets * w_p.shape[1], w_p.reshape(-1, w_p.shape[-1]))
        return x.view(K, B * T, -1)

    def _masks(self, n_q: int, n_k: int, x: Tensor, visible: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The additive attention mask of queries at the last ``n_q`` positions, and the queries
        left with no key (see :func:`~mechinterp_arith.core.fast_ops.key_mask`)."""
        if visible is None:
            return causal_mask(n_q, n_k, x.device, x.dtype), None
        return key_mask(n_q, visible.reshape(-1, n_k), x.dtype)

    def _norm_linear(self, x: Tensor, norm: str, w: Tensor, b: Tensor) -> Tensor:
        """``LayerNorm(x) @ w^T + b`` with the norm's affine folded into ``w`` [K, out, in] and ``b`` [K, out]."""
        g, beta = self.weight(f"{norm}.weight"), self.weight(f"{norm}.bias")
        x_hat = F.layer_norm(x, (x.shape[-1],), eps=self.eps)
        bias = b + (w * beta.unsqueeze(1)).sum(-1)
        return torch.baddbmm(bias.unsqueeze(1), x_hat, (w * g.unsqueeze(1)).transpose(1, 2))

    def _layer(
        self,
        j: int,
        x: Float[Tensor, "K rows d_model"],
        B: int,
        T: int,
        first: int,
        ids: Int[Tensor, "model_rows pos"] | None,  # [K*B, T]
        masks: tuple[Tensor, Tensor | None],
    ) -> Tensor:
        """Layer ``j`` on the residual of all T positions; returns the residual of positions ``first..``."""
        p = f"blocks.{j}."
        K, _, D = x.shape
        H, dh, T_out = self.n_heads, self.d_head, T - first
        w = torch.cat(
            [
                self.weight(p + "attn.q.weight") * self.scale,
                self.weight(p + "attn.k.weight"),
                self.weight(p + "attn.v.weight"),
            ],
            dim=1,
        )
        b = torch.cat(
            [
                self.weight(p + "attn.q.bias") * self.scale,
                self.weight(p + "attn.k.bias"),
                self.weight(p + "attn.v.bias"),
            ],
            dim=1,
        )
        # unbind and split, not indexing: their backward writes no zero-filled full-size gradients
        q, k, v = (t.transpose(1, 2) for t in self._norm_linear(x, p + "ln1", w, b).view(K * B, T, 3, H, dh).unbind(2))
        if self.rotary is not None:  # rotation is linear: the folded attention scale commutes with it
            at = torch.arange(T, device=x.device).unsqueeze(0) if ids is None else ids
            q, k = self.rotary(q, at), self.rotary(k, at)
        if first:
            q = q.split([first, T_out], dim=2)[1]  # [K*B, H, T_out, dh]
            x = x.view(K, B, T, D).split([first, T_out], dim=2)[1].reshape(K, B * T_out, D)
        mask, empty = masks
        pattern = masked_softmax(q @ k.transpose(-1, -2), mask)
        if empty is not None:  # queries that may read no key: a zero pattern, as the bridge's
            pattern = pattern.masked_fill(empty, 0.0)
        z = (pattern @ v).transpose(1, 2).reshape(K, B * T_out, D)
        x = x + torch.baddbmm(
            self.weight(p + "attn.o.bias").unsqueeze(1), z, self.weight(p + "attn.o.weight").transpose(1, 2)
        )
        h = self.act(self._norm_linear(x, p + "ln2", self.weight(p + "mlp.in.weight"), self.weight(p + "mlp.in.bias")))
        return x + torch.baddbmm(
            self.weight(p + "mlp.out.bias").unsqueeze(1), h, self.weight(p + "mlp.out.weight").transpose(1, 2)
        )


def stacked_forward_for(models: Sequence[TransformerBridge], probe: Int[Tensor, "batch pos"]) -> StackedForward | None:
    """A :class:`StackedForward` of ``models``, or None when it cannot run them or its logits on
    ``probe`` differ from each bridge's by more than float rounding."""
    try:
        fwd = StackedForward(models)
    except NotImplementedError:
        return None
    with torch.no_grad():
        tokens = probe.unsqueeze(0).expand(len(models), -1, -1)
        ours = fwd(tokens, 0, *fwd.numbering(tokens))
        for k, model in enumerate(models):
            ref = model(probe)
            if not torch.allclose(ours[k], ref, atol=MAX_LOGIT_DIFF, rtol=LOGIT_RTOL):
                return None
    return fwd
