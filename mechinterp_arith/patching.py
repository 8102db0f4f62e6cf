"""Batched activation patching: many patched sites per forward pass, TL-compatible drop-ins.

``transformer_lens.patching`` runs one forward pass of the whole corrupted batch per patched site.
Here the patched variants are stacked along the batch (variant-major: rows ``s*B .. s*B+B-1`` hold
variant ``s``) and run in chunks of at most ``chunk_size`` rows. Two paths run the chunks:

``fast``   a functional replica of the model's forward built from its weights (pre-LN GPT with
           learned positions, the architecture :mod:`mechinterp_arith.model` builds), checked
           against the bridge's own logits before use. A variant patched at layer ``l`` and
           position ``p`` only recomputes layers ``>= l`` at positions ``>= p``: everything
           upstream is exactly the corrupted run, reused from its cache (keys and values included).
``hooks``  any TL-hooked model: the stacked variants run through ``model.run_with_hooks`` with
           one hook per hooked activation that writes each variant's clean slice.

``method="auto"`` uses ``fast`` when the replica reproduces the bridge (max logit difference
below 1e-4), else ``hooks``.

No silent no-ops: a site whose clean and corrupted activations are identical for every row
(e.g. positions before the first differing token) is not run: its value is the metric on the
unpatched corrupted logits, and the sweep reports it (``Sweep.identical``; the drop-ins warn with
:class:`IdenticalSitesWarning`). Every other patch checks that its write changed the activation
and that its hook fired (RuntimeError otherwise), and the sweep records how far each patch moved
the logits (``Sweep.max_logit_change``).

>>> from mechinterp_arith import load
>>> from mechinterp_arith.prompt_pairs import change_operand_digit, logit_diff_metric
>>> ckpt = load("add3")
>>> pairs = change_operand_digit(ckpt.task, n=64, operand="b", place=0, seed=0)
>>> _, clean_cache = ckpt.model.run_with_cache(pairs.clean_tokens)
>>> metric = logit_diff_metric(pairs, k=0)
>>> get_act_patch_resid_pre(ckpt.model, pairs.corrupted_tokens, clean_cache, metric).shape
torch.Size([3, 15])
>>> sweep = patch_sweep(ckpt.model, pairs.corrupted_tokens, clean_cache, metric, "z", by_pos=True)
>>> sweep.values.shape, sweep.axis_names                  # [layer, pos, head] as in TL
(torch.Size([3, 15, 3]), ('layer', 'pos', 'head'))
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

KINDS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "result")
HEAD_KINDS = ("z", "result")
METHODS = ("auto", "fast", "hooks")
DEFAULT_CHUNK = 1024
REPLICA_ATOL = 1e-4
SLACK = 1.0  # see _chunks_by_start
_ACTS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


class IdenticalSitesWarning(UserWarning):
    """Some patched sites hold the same activation in the clean and corrupted runs."""


def hook_name(kind: str, layer: int) -> str:
    """TL hook name of a patchable activation, e.g. ``hook_name("z", 0) == "blocks.0.attn.hook_z"``."""
    if kind in ("z", "result"):
        return f"blocks.{layer}.attn.hook_{kind}"
    return f"blocks.{layer}.hook_{kind}"


@dataclass
class Sweep:
    """Results of patching every site of one kind.

    ``values`` is ``[*site_axes, *metric_shape]`` (site axes as TL orders them: ``layer, pos`` for
    residual/attn_out/mlp_out, ``layer, pos, head`` or ``layer, head`` for heads). ``identical``
    marks sites whose clean and corrupted activations are equal in every row (their value is the
    unpatched corrupted metric); ``max_logit_change`` is max |patched - corrupted| over the logits.
    """

    kind: str
    axis_names: tuple[str, ...]
    values: Tensor
    identical: Bool[Tensor, "..."]
    max_logit_change: Float[Tensor, "..."]
    baseline: Tensor
    method: str
    n_forward_rows: int = 0

    def frame(self) -> pd.DataFrame:
        """One row per site: axis columns, ``value`` (scalar metrics), ``identical``, ``max_logit_change``."""
        shape = tuple(self.identical.shape)
        rows = []
        flat_vals = self.values.reshape(math.prod(shape), -1)
        for i, idx in enumerate(_ndindex(shape)):
            row = {"kind": self.kind, **dict(zip(self.axis_names, idx))}
            vals = flat_vals[i]
            if vals.numel() == 1:
                row["value"] = float(vals)
            else:
                for j, v in enumerate(vals.tolist()):
                    row[f"value_{j}"] = v
            row["identical"] = bool(self.identical[idx])
            row["max_logit_change"] = float(self.max_logit_change[idx])
            rows.append(row)
        return pd.DataFrame(rows)

    def identical_sites(self) -> pd.DataFrame:
        """The sites where patching is a no-op because clean and corrupted activations are equal."""
        df = self.frame()
        return df[df.identical].reset_index(drop=True)


def _ndindex(shape):
    import itertools

    return itertools.product(*[range(n) for n in shape])


# ---- sites ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Site:
    kind: str
    layer: int
    pos: int | None  # None: every position (head sites "all_pos")
    head: int | None
    index: tuple  # where the value goes in the result grid


def _sites(kind: str, by_pos: bool, n_layers: int, n_pos: int, n_heads: int) -> tuple[list[_Site], tuple[str, ...], tuple]:
    if kind not in KINDS:
        raise ValueError(f"unknown activation kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in HEAD_KINDS:
        if by_pos:
            sites = [_Site(kind, l, p, h, (l, p, h)) for l in range(n_layers) for p in range(n_pos) for h in range(n_heads)]
            return sites, ("layer", "pos", "head"), (n_layers, n_pos, n_heads)
        sites = [_Site(kind, l, None, h, (l, h)) for l in range(n_layers) for h in range(n_heads)]
        return sites, ("layer", "head"), (n_layers, n_heads)
    if not by_pos:
        raise ValueError(f"{kind} is patched per (layer, position); by_pos=False applies to head kinds z and result")
    sites = [_Site(kind, l, p, None, (l, p)) for l in range(n_layers) for p in range(n_pos)]
    return sites, ("layer", "pos"), (n_layers, n_pos)


def _act(cache, kind: str, layer: int, model) -> Tensor:
    """An activation from a TL cache; ``result`` is computed from ``z`` and W_O when not cached."""
    if kind == "result":
        name = hook_name("result", layer)
        if name in cache:
            return cache[name]
        z = cache[hook_name("z", layer)]
        return torch.einsum("bphd,hdm->bphm", z, model.W_O[layer].detach().to(z.dtype))
    name = hook_name(kind, layer)
    try:
        return cache[name]
    except KeyError:
        raise ValueError(f"the clean cache holds no {name!r}; run model.run_with_cache without a names_filter that drops it") from None


def _site_slice(t: Tensor, site: _Site) -> Tensor:
    if site.kind in HEAD_KINDS:
        return t[:, :, site.head] if site.pos is None else t[:, site.pos, site.head]
    return t[:, site.pos]


def _first_diff_pos(clean: Tensor, corr: Tensor) -> int | None:
    """First position (dim 1) where the two differ in any row, None when identical."""
    diff = (clean != corr).reshape(clean.shape[0], clean.shape[1], -1).any(-1).any(0)
    nz = torch.nonzero(diff)
    return int(nz[0]) if len(nz) else None


# ---- the functional replica (fast path) -------------------------------------------------------------
class _Replica:
    """The model's forward as plain tensor ops, able to start at any (layer, position)."""

    def __init__(self, model):
        cfg = model.cfg
        unsupported = []
        if getattr(cfg, "positional_embedding_type", "standard") != "standard":
            unsupported.append(f"positional_embedding_type={cfg.positional_embedding_type}")
        if getattr(cfg, "normalization_type", "LN") != "LN":
            unsupported.append(f"normalization_type={cfg.normalization_type}")
        if cfg.act_fn not in _ACTS:
            unsupported.append(f"act_fn={cfg.act_fn}")
        for flag in ("attn_only", "parallel_attn_mlp", "gated_mlp"):
            if getattr(cfg, flag, False):
                unsupported.append(flag)
        if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
            unsupported.append("grouped-query attention")
        if unsupported:
            raise NotImplementedError(", ".join(unsupported))
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        self.sd, self.cfg = sd, cfg
        self.L, self.H, self.dh, self.D = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model
        self.eps = cfg.eps
        self.act = _ACTS[cfg.act_fn]
        self.W_O = model.W_O.detach()  # [L, H, dh, D]
        self.scale = 1.0 / math.sqrt(cfg.d_head) if getattr(cfg, "use_attn_scale", True) else 1.0

    def _w(self, name):
        return self.sd[name]

    @torch.inference_mode()
    def run(self, tokens: Int[Tensor, "batch pos"]) -> tuple[Tensor, dict]:
        """Full forward; returns logits and a cache of resid/attn/mlp/z/k/v per layer."""
        x = self._w("embed.weight")[tokens] + self._w("pos_embed.weight")[: tokens.shape[1]]
        cache: dict = {}
        logits = self._blocks(x, 0, 0, None, None, None, cache)
        return logits, cache

    def _blocks(self, x, layer, p0, k_pre, v_pre, patch, cache=None, S=1):
        """Run blocks ``layer..`` on positions ``p0..`` of x [S*B, Q, D]; keys/values of positions < p0
        come from ``k_pre/v_pre[j]`` [B, H, p0, dh] (shared by the S stacked variants).
        ``patch(point, layer, tensor)`` edits activations in place."""
        N, Q, D = x.shape
        H, dh = self.H, self.dh
        for j in range(layer, self.L):
            p = f"blocks.{j}."
            if patch:
                patch("resid_pre", j, x)
            if cache is not None:
                cache[("resid_pre", j)] = x
            h = F.layer_norm(x, (D,), self._w(p + "ln1.weight"), self._w(p + "ln1.bias"), self.eps)
            q = F.linear(h, self._w(p + "attn.q.weight"), self._w(p + "attn.q.bias")).view(N, Q, H, dh).transpose(1, 2)
            k = F.linear(h, self._w(p + "attn.k.weight"), self._w(p + "attn.k.bias")).view(N, Q, H, dh).transpose(1, 2)
            v = F.linear(h, self._w(p + "attn.v.weight"), self._w(p + "attn.v.bias")).view(N, Q, H, dh).transpose(1, 2)
            if cache is not None:
                cache[("k", j)], cache[("v", j)] = k, v
            if p0:
                z = self._attend_with_prefix(q, k, v, k_pre[j], v_pre[j], S)
            else:
                z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            z = z.transpose(1, 2).contiguous()  # [N, Q, H, dh]
            if cache is not None:
                cache[("z", j)] = z
            x = self._finish_layer(j, x, z, patch, cache)
        x = F.layer_norm(x, (D,), self._w("ln_final.weight"), self._w("ln_final.bias"), self.eps)
        logits = F.linear(x, self._w("unembed.weight"))
        if "unembed.bias" in self.sd:
            logits = logits + self._w("unembed.bias")
        return logits

    def _finish_layer(self, j, x, z, patch, cache=None):
        """Layer ``j`` from its heads' z onwards: W_O, residual, MLP; returns resid_post."""
        N, Q, D = x.shape
        p = f"blocks.{j}."
        if patch:
            patch("z", j, z)
        attn_out = F.linear(z.reshape(N, Q, D), self._w(p + "attn.o.weight"), self._w(p + "attn.o.bias"))
        if patch:
            patch("result", j, (attn_out, z))
            patch("attn_out", j, attn_out)
        x = x + attn_out
        if patch:
            patch("resid_mid", j, x)
        h = F.layer_norm(x, (D,), self._w(p + "ln2.weight"), self._w(p + "ln2.bias"), self.eps)
        mlp_out = F.linear(self.act(F.linear(h, self._w(p + "mlp.in.weight"), self._w(p + "mlp.in.bias"))),
                           self._w(p + "mlp.out.weight"), self._w(p + "mlp.out.bias"))
        if patch:
            patch("mlp_out", j, mlp_out)
        x = x + mlp_out
        if patch:
            patch("resid_post", j, x)
        if cache is not None:
            cache[("resid_post", j)] = x
        return x

    def _attend_with_prefix(self, q, k, v, k_pre, v_pre, S):
        """Causal attention of queries at positions p0.. over cached prefix keys (broadcast over
        the S variants, never copied) and the new keys. q, k, v: [S*B, H, Q, dh]."""
        N, H, Q, dh = q.shape
        B, p0 = N // S, k_pre.shape[-2]
        q = q * self.scale
        # prefix scores as one [B*H] batched matmul over all S*Q queries
        qb = q.view(S, B, H, Q, dh).permute(1, 2, 0, 3, 4).reshape(B, H, S * Q, dh)
        pre = (qb @ k_pre.transpose(-1, -2)).view(B, H, S, Q, p0).permute(2, 0, 1, 3, 4).reshape(N, H, Q, p0)
        new = (q @ k.transpose(-1, -2)).masked_fill(~torch.ones(Q, Q, dtype=torch.bool, device=q.device).tril(), float("-inf"))
        w = torch.cat([pre, new], dim=-1).softmax(-1)
        wb = w[..., :p0].reshape(S, B, H, Q, p0).permute(1, 2, 0, 3, 4).reshape(B, H, S * Q, p0)
        z_pre = (wb @ v_pre).view(B, H, S, Q, dh).permute(2, 0, 1, 3, 4).reshape(N, H, Q, dh)
        z = z_pre + w[..., p0:] @ v
        return z.view(N, H, Q, dh)


_REPLICAS: dict[int, tuple[object, _Replica]] = {}


def _cached_replica(model, tokens, base_logits) -> tuple[_Replica | None, dict | None]:
    """The model's replica (built once per set of weights) and its cache of the corrupted run,
    or (None, None) when the architecture is unsupported or the replica's logits differ."""
    version = tuple(p.data_ptr() for p in model.parameters())
    hit = _REPLICAS.get(id(model))
    if hit is not None and hit[0] == version:
        rep = hit[1]
    else:
        try:
            rep = _Replica(model)
        except NotImplementedError:
            rep = None
        _REPLICAS[id(model)] = (version, rep)
    if rep is None:
        return None, None
    logits, cache = rep.run(tokens)
    if not torch.allclose(logits, base_logits, atol=REPLICA_ATOL, rtol=0):
        return None, None
    return rep, cache


# ---- the engine -------------------------------------------------------------------------------------
@dataclass
class _Variant:
    site: _Site
    p0: int  # first position it recomputes (fast path)
    clean: Tensor  # the clean values written, aligned with the targeted slice
    corr: Tensor  # the corrupted values there


def patch_sweep(
    model,
    corrupted_tokens: Int[Tensor, "batch pos"],
    clean_cache,
    patching_metric: Callable[[Float[Tensor, "batch pos vocab"]], Tensor],
    kind: str,
    by_pos: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    method: str = "auto",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
) -> Sweep:
    """Patch every site of ``kind`` from ``clean_cache`` into the corrupted run.

    Args:
        kind: resid_pre, resid_mid, resid_post, attn_out, mlp_out (sites (layer, pos)), z or result
            (sites (layer, pos, head) when ``by_pos`` else (layer, head), every position at once).
        patching_metric: called once per patched variant with its logits [batch, pos, vocab];
            any tensor it returns is stacked (scalar for TL-style metrics).
        chunk_size: rows per forward pass (variants x batch); bounds memory.
        method: "auto", "fast" or "hooks" (see the module docstring).
        layers, positions: restrict the sweep; sites outside keep NaN values.

    Returns a :class:`Sweep`; e.g. ``values`` [3, 15] for resid_pre on add3.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if model.training:
        raise ValueError("activation patching needs model.eval() first")
    if corrupted_tokens.ndim != 2:
        raise ValueError(f"corrupted_tokens must be [batch, pos], got shape {tuple(corrupted_tokens.shape)}")
    cfg = model.cfg
    device = next(model.parameters()).device
    tokens = corrupted_tokens.to(device)
    B, P = tokens.shape
    sites, axis_names, grid = _sites(kind, by_pos, cfg.n_layers, P, cfg.n_heads)
    for name, sel, hi in (("layer", layers, cfg.n_layers), ("position", positions, P)):
        for v in sel or []:
            if not 0 <= int(v) < hi:
                raise ValueError(f"{name} {v} is out of range (0..{hi - 1})")
    if layers is not None:
        sites = [s for s in sites if s.layer in set(int(v) for v in layers)]
    if positions is not None:
        sites = [s for s in sites if s.pos is not None and s.pos in set(int(v) for v in positions)]

    _check_clean_cache(clean_cache, kind, sites, model, B, P)
    needed = sorted({hook_name("z" if kind == "result" else kind, s.layer) for s in sites})
    with torch.inference_mode():
        base_logits, corr_cache = model.run_with_cache(tokens, names_filter=lambda n: n in needed)
        baseline = torch.as_tensor(patching_metric(base_logits)).detach()

    values = torch.full(grid + tuple(baseline.shape), float("nan"), dtype=torch.float32)
    identical = torch.zeros(grid, dtype=torch.bool)
    max_change = torch.full(grid, float("nan"))
    variants: list[_Variant] = []
    for s in sites:
        clean = _site_slice(_act(clean_cache, kind, s.layer, model), s).to(device)
        corr = _site_slice(_act(corr_cache, kind, s.layer, model), s)
        if clean.shape != corr.shape:
            raise ValueError(f"clean cache {hook_name(kind, s.layer)} has shape {tuple(clean.shape)} at this site; "
                             f"the corrupted run has {tuple(corr.shape)} (same batch and length needed)")
        if torch.equal(clean, corr):
            identical[s.index] = True
            values[s.index] = baseline.float()
            max_change[s.index] = 0.0
            continue
        if s.pos is None:  # all positions of a head: start where they first differ
            p0 = _first_diff_pos(clean, corr)
            variants.append(_Variant(s, p0, clean[:, p0:], corr[:, p0:]))
        else:
            variants.append(_Variant(s, s.pos, clean, corr))

    rep = rep_cache = None
    if method in ("auto", "fast") and variants:
        rep, rep_cache = _cached_replica(model, tokens, base_logits)
        if rep is None and method == "fast":
            raise ValueError("method='fast' needs a pre-LN GPT with learned positions that the replica reproduces; use method='hooks'")
    used = "fast" if rep is not None else "hooks"
    rows = 0
    if rep is not None:
        rows = _run_fast(rep, tokens, variants, base_logits, patching_metric, chunk_size, values, max_change, rep_cache)
    elif variants:
        rows = _run_hooks(model, tokens, variants, base_logits, patching_metric, chunk_size, values, max_change)
    return Sweep(kind, axis_names, values, identical, max_change, baseline, used, rows)


def _check_clean_cache(clean_cache, kind, sites, model, B, P):
    for s in sites[:1]:
        t = _act(clean_cache, kind, s.layer, model)
        if t.shape[0] != B or t.shape[1] != P:
            raise ValueError(f"clean cache activations are [{t.shape[0]}, {t.shape[1]}, ...] but corrupted_tokens are "
                             f"[{B}, {P}]: clean and corrupted prompts must have the same batch and length")


def _chunks_by_start(variants: list, per_chunk: int, P: int, slack: float = SLACK):
    """Chunks of variants sorted by start position (descending); a chunk grows while it holds
    fewer than ``per_chunk`` and its smallest start recomputes at most ``slack`` x the positions
    its first variant needs."""
    chunk: list = []
    for v in variants:
        if chunk and (len(chunk) >= per_chunk or (P - v.p0) > slack * (P - chunk[0].p0)):
            yield chunk
            chunk = []
        chunk.append(v)
    if chunk:
        yield chunk


def _chunks(items: list, per_chunk: int):
    for i in range(0, len(items), per_chunk):
        yield items[i : i + per_chunk]


def _evaluate(metric, logits: Tensor, variants, values, max_change, base_logits, S, B):
    for s, var in enumerate(variants):
        lg = logits[s * B : (s + 1) * B]
        values[var.site.index] = torch.as_tensor(metric(lg)).detach().float().cpu()
        max_change[var.site.index] = float((lg - base_logits).abs().max())


def _run_fast(rep: _Replica, tokens, variants, base_logits, metric, chunk_size, values, max_change, cc) -> int:
    """Variants grouped by where they start. A resid_pre patch at (l, p) reruns layers >= l at
    positions >= p. Any other patch at (l, p) leaves layer l's attention untouched and changes
    only position p within layer l, so it reruns layer l from z at position p alone and layers > l
    at positions >= p; all-position head patches rerun layer l from z at positions >= p0."""
    B, P = tokens.shape
    groups: dict[tuple[str, int], list[_Variant]] = {}
    for v in variants:
        site = v.site
        mode = "pre" if site.kind == "resid_pre" else ("point" if site.pos is not None else "span")
        groups.setdefault((mode, site.layer), []).append(v)
    per_chunk = max(1, chunk_size // B)
    rows = 0
    with torch.inference_mode():
        for (mode, layer), group in sorted(groups.items()):
            # variants of one chunk share a start position (the chunk's smallest): positions
            # between it and a variant's own site are recomputed unchanged
            group = sorted(group, key=lambda v: -v.p0)
            for chunk in _chunks_by_start(group, per_chunk, P):
                S = len(chunk)
                p0 = min(v.p0 for v in chunk)
                kp = {j: cc[("k", j)][:, :, :p0] for j in range(rep.L)}
                vp = {j: cc[("v", j)][:, :, :p0] for j in range(rep.L)}
                fired = [False] * S
                patch = _make_fast_patch(rep, chunk, layer, p0, S, B, fired)
                if mode == "pre":
                    x = cc[("resid_pre", layer)][:, p0:].repeat(S, 1, 1)
                    new = rep._blocks(x, layer, p0, kp, vp, patch, S=S)
                else:
                    stop = max(v.site.pos for v in chunk) + 1 if mode == "point" else P
                    x = cc[("resid_pre", layer)][:, p0:stop].repeat(S, 1, 1)
                    z = cc[("z", layer)][:, p0:stop].repeat(S, 1, 1, 1)
                    x = rep._finish_layer(layer, x, z, patch)
                    if stop < P:
                        x = torch.cat([x, cc[("resid_post", layer)][:, stop:].repeat(S, 1, 1)], dim=1)
                    new = rep._blocks(x, layer + 1, p0, kp, vp, None, S=S)
                _require_fired(fired, chunk)
                logits = torch.cat([base_logits[:, :p0].repeat(S, 1, 1), new], dim=1)
                rows += S * B
                _evaluate(metric, logits, chunk, values, max_change, base_logits, S, B)
    return rows


def _make_fast_patch(rep, chunk, layer, p0, S, B, fired):
    by_point: dict[str, list[tuple[int, _Variant]]] = {}
    for s, v in enumerate(chunk):
        by_point.setdefault(v.site.kind, []).append((s, v))

    def patch(point, j, t):
        if j != layer or point not in by_point:
            return
        for s, v in by_point[point]:
            site = v.site
            if point == "result":
                attn_out, z = t
                zv = z.view(S, B, *z.shape[1:])
                ov = attn_out.view(S, B, *attn_out.shape[1:])
                q = slice(v.p0 - p0, None) if site.pos is None else site.pos - p0
                # v.clean is the clean result [B, (Q,) D]: add clean - corrupted result of this head
                corr_result = zv[s, :, q, site.head] @ rep.W_O[layer, site.head]
                before = ov[s, :, q].clone()
                ov[s, :, q] += v.clean - corr_result
                _check_changed(before, ov[s, :, q], site)
            else:
                tv = t.view(S, B, *t.shape[1:])
                if site.kind == "z":
                    q = slice(v.p0 - p0, None) if site.pos is None else site.pos - p0
                    target = (s, slice(None), q, site.head)
                else:
                    target = (s, slice(None), site.pos - p0)
                before = tv[target].clone()
                tv[target] = v.clean
                _check_changed(before, tv[target], site)
            fired[s] = True

    return patch


def _check_changed(before: Tensor, after: Tensor, site: _Site) -> None:
    if torch.equal(before, after):
        raise RuntimeError(f"patching {site.kind} at layer {site.layer}, pos {site.pos}, head {site.head} did not change "
                           "the activation although the clean and corrupted caches differ there")


def _require_fired(fired, chunk):
    for ok, v in zip(fired, chunk):
        if not ok:
            s = v.site
            raise RuntimeError(f"the patch of {hook_name(s.kind, s.layer)} (pos {s.pos}, head {s.head}) never ran: "
                               "it would have been a silent no-op")


def _run_hooks(model, tokens, variants, base_logits, metric, chunk_size, values, max_change) -> int:
    """Generic path: stacked variants through ``model.run_with_hooks``."""
    B, P = tokens.shape
    per_chunk = max(1, chunk_size // B)
    rows = 0
    with torch.inference_mode():
        for chunk in _chunks(variants, per_chunk):
            S = len(chunk)
            fired = [False] * S
            hooks = _make_hooks(model, chunk, S, B, fired)
            logits = model.run_with_hooks(tokens.repeat(S, 1), fwd_hooks=hooks)
            _require_fired(fired, chunk)
            rows += S * B
            _evaluate(metric, logits, chunk, values, max_change, base_logits, S, B)
    return rows


def _make_hooks(model, chunk, S, B, fired):
    by_name: dict[str, list[tuple[int, _Variant]]] = {}
    for s, v in enumerate(chunk):
        site = v.site
        # result and resid_mid are written through hook_attn_out: TL 4.3 bridges expose
        # hook_resid_mid as the input of ln2 only, so editing it there never reaches the residual
        name = hook_name("attn_out" if site.kind in ("result", "resid_mid") else site.kind, site.layer)
        by_name.setdefault(name, []).append((s, v))
    z_seen: dict[int, Tensor] = {}
    hooks = []
    for name, items in by_name.items():
        def hook(act, hook, items=items):
            act = act.clone()
            av = act.view(S, B, *act.shape[1:])
            for s, v in items:
                site = v.site
                q = slice(v.p0, None) if site.pos is None else site.pos
                if site.kind == "result":
                    z = z_seen[site.layer].view(S, B, *z_seen[site.layer].shape[1:])
                    corr_result = z[s, :, q, site.head] @ model.W_O[site.layer, site.head].detach()
                    before = av[s, :, q].clone()
                    av[s, :, q] += v.clean - corr_result
                    after = av[s, :, q]
                elif site.kind == "resid_mid":  # resid_mid = resid_pre + attn_out: shift attn_out
                    before = av[s, :, q].clone()
                    av[s, :, q] += v.clean - v.corr
                    after = av[s, :, q]
                elif site.kind == "z":
                    before = av[s, :, q, site.head].clone()
                    av[s, :, q, site.head] = v.clean
                    after = av[s, :, q, site.head]
                else:
                    before = av[s, :, q].clone()
                    av[s, :, q] = v.clean
                    after = av[s, :, q]
                _check_changed(before, after, site)
                fired[s] = True
            return act

        hooks.append((name, hook))
    for layer in sorted({v.site.layer for v in chunk if v.site.kind == "result"}):
        def save_z(z, hook, layer=layer):
            z_seen[layer] = z
            return z

        hooks.insert(0, (hook_name("z", layer), save_z))
    return hooks


# ---- TL drop-ins ----------------------------------------------------------------------------------
def _drop_in(kind: str, by_pos: bool, doc: str):
    def fn(model, corrupted_tokens, clean_cache, patching_metric, *, reduce: str = "scalar",
           return_index_df: bool = False, chunk_size: int = DEFAULT_CHUNK, method: str = "auto",
           warn_identical: bool = True):
        if reduce not in ("scalar", "mean"):
            raise ValueError(f"reduce must be 'scalar' or 'mean' here, got {reduce!r}")
        sweep = patch_sweep(model, corrupted_tokens, clean_cache, patching_metric, kind, by_pos,
                            chunk_size=chunk_size, method=method)
        out = sweep.values
        extra = out.ndim - len(sweep.axis_names)
        if reduce == "scalar" and extra:
            raise ValueError(f"patching_metric must return a scalar under reduce='scalar', got shape {tuple(out.shape[-extra:])}")
        if reduce == "mean":
            out = out.mean(dim=-1) if extra else out
        out = out.to(next(model.parameters()).device)
        if warn_identical and bool(sweep.identical.any()):
            n, total = int(sweep.identical.sum()), sweep.identical.numel()
            listed = ", ".join(str(tuple(i.tolist())) for i in torch.nonzero(sweep.identical)[:8])
            warnings.warn(f"{n} of {total} {kind} sites ({'/'.join(sweep.axis_names)}) have identical clean and corrupted "
                          f"activations, so patching them is a no-op (value = unpatched corrupted metric): {listed}"
                          f"{' ...' if n > 8 else ''}", IdenticalSitesWarning, stacklevel=2)
        if return_index_df:
            from transformer_lens.patching import make_df_from_ranges

            return out, make_df_from_ranges(list(sweep.identical.shape), list(
                a.replace("head", "head_index") if kind not in HEAD_KINDS else a for a in sweep.axis_names))
        return out

    fn.__doc__ = doc + """

    Same arguments and return value as the ``transformer_lens.patching`` function of the same name
    (``reduce`` "scalar"/"mean" and ``return_index_df`` as there), computed with batched patched
    variants (:func:`patch_sweep`). Extra keywords: ``chunk_size``, ``method``, ``warn_identical``.
    """
    return fn


get_act_patch_resid_pre = _drop_in("resid_pre", True, "Patch the residual stream before each block, per (layer, pos): [n_layers, pos].")
get_act_patch_resid_mid = _drop_in("resid_mid", True, "Patch the residual stream between attention and MLP, per (layer, pos): [n_layers, pos].")
get_act_patch_attn_out = _drop_in("attn_out", True, "Patch each attention layer's output, per (layer, pos): [n_layers, pos].")
get_act_patch_mlp_out = _drop_in("mlp_out", True, "Patch each MLP layer's output, per (layer, pos): [n_layers, pos].")
get_act_patch_attn_head_out_by_pos = _drop_in("z", True, "Patch each head's z, per (layer, pos, head): [n_layers, pos, n_heads].")
get_act_patch_attn_head_out_all_pos = _drop_in("z", False, "Patch each head's z at every position, per (layer, head): [n_layers, n_heads].")
for _f, _n in [(get_act_patch_resid_pre, "get_act_patch_resid_pre"), (get_act_patch_resid_mid, "get_act_patch_resid_mid"),
               (get_act_patch_attn_out, "get_act_patch_attn_out"), (get_act_patch_mlp_out, "get_act_patch_mlp_out"),
               (get_act_patch_attn_head_out_by_pos, "get_act_patch_attn_head_out_by_pos"),
               (get_act_patch_attn_head_out_all_pos, "get_act_patch_attn_head_out_all_pos")]:
    _f.__name__ = _f.__qualname__ = _n
