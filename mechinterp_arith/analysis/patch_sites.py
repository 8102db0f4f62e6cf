"""Patch sites: which activation (kind, layer, position, head) a patch writes, and where clean and
corrupted runs differ. Used by :mod:`~mechinterp_arith.analysis.patching` and its runners.

>>> hook_name("z", 0), hook_name("resid_pre", 2)
('blocks.0.attn.hook_z', 'blocks.2.hook_resid_pre')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from jaxtyping import Bool
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities import get_act_name

KINDS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "result")
HEAD_KINDS = ("z", "result")
SAME_RTOL = 1e-5  # clean and corrupted activations this close (relative to their scale) count as equal


@functools.lru_cache(maxsize=4096)
def hook_name(kind: str, layer: int) -> str:
    """TL hook name of a patchable activation, e.g. ``hook_name("z", 0) == "blocks.0.attn.hook_z"``."""
    return get_act_name(kind, layer)


@dataclass(frozen=True)
class Site:
    kind: str
    layer: int
    pos: int | None  # None: every position (head sites "all_pos")
    head: int | None
    index: tuple[int, ...]  # where the value goes in the result grid


def site_grid(
    kind: str, by_pos: bool, n_layers: int, n_pos: int, n_heads: int
) -> tuple[list[Site], tuple[str, ...], tuple[int, ...]]:
    if kind not in KINDS:
        raise ValueError(f"unknown activation kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in HEAD_KINDS:
        if by_pos:
            sites = [
                Site(kind, l, p, h, (l, p, h)) for l in range(n_layers) for p in range(n_pos) for h in range(n_heads)
            ]
            return sites, ("layer", "pos", "head"), (n_layers, n_pos, n_heads)
        sites = [Site(kind, l, None, h, (l, h)) for l in range(n_layers) for h in range(n_heads)]
        return sites, ("layer", "head"), (n_layers, n_heads)
    if not by_pos:
        raise ValueError(f"{kind} is patched per (layer, position); by_pos=False applies to head kinds z and result")
    sites = [Site(kind, l, p, None, (l, p)) for l in range(n_layers) for p in range(n_pos)]
    return sites, ("layer", "pos"), (n_layers, n_pos)


# a cache of activations by TL hook name: TL's ActivationCache or a plain dict
CacheLike = ActivationCache | dict[str, Tensor]


def activation(cache: CacheLike, kind: str, layer: int, model: TransformerBridge) -> Tensor:
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
        raise ValueError(
            f"the clean cache holds no {name!r}; run model.run_with_cache without a names_filter that drops it"
        ) from None


def site_slice(t: Tensor, site: Site) -> Tensor:
    if site.kind in HEAD_KINDS:
        return t[:, :, site.head] if site.pos is None else t[:, site.pos, site.head]
    return t[:, site.pos]


def differs(clean: Tensor, corr: Tensor) -> Bool[Tensor, ...]:
    """Where clean and corrupted activations differ by more than float rounding (``SAME_RTOL`` of
    the activation's scale): the corrupted run may come from the plain forward and the clean one
    from the bridge, which agree only to rounding."""
    scale = max(float(clean.abs().max()), float(corr.abs().max()), 1.0) if clean.numel() else 1.0
    return (clean - corr).abs() > SAME_RTOL * scale


def site_differences(clean: Tensor, corr: Tensor, heads: bool) -> Bool[Tensor, "batch ..."]:
    """[batch, pos] (or [batch, pos, head] when ``heads``): which rows of each per-position site
    differ between clean and corrupted activations ``[B, pos, (head,) d]``, with the site's scale
    as in :func:`differs` (a site differs when any of its rows does)."""
    dims = (0, 3) if heads else (0, 2)
    scale = torch.maximum(clean.abs().amax(dims), corr.abs().amax(dims)).clamp_min(1.0)
    return (clean - corr).abs().amax(-1) > SAME_RTOL * scale


def same(clean: Tensor, corr: Tensor) -> bool:
    return not bool(differs(clean, corr).any())


def first_diff_pos(clean: Tensor, corr: Tensor) -> int | None:
    """First position (dim 1) where the two differ in any row, None when identical."""
    diff = differs(clean, corr).reshape(clean.shape[0], clean.shape[1], -1).any(-1).any(0)
    nz = torch.nonzero(diff)
    return int(nz[0]) if len(nz) else None


@dataclass
class Variant:
    site: Site
    p0: int  # first position it recomputes (fast path)
    clean: Tensor  # the clean values written, aligned with the targeted slice
    corr: Tensor  # the corrupted values there
    rows: Tensor | None = None  # the batch rows whose values differ (None: all); the others are not run
