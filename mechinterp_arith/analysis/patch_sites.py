"""Patch sites: which activation (kind, layer, position, head) a patch writes, where clean and
corrupted runs differ, and which sites need a patched run at all (:func:`variant_of`). Used by :mod:`~mechinterp_arith.analysis.patching` and its runners.

>>> hook_name("z", 0), hook_name("resid_pre", 2)
('blocks.0.attn.hook_z', 'blocks.2.hook_resid_pre')
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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


def variant_of(
    s: Site,
    clean: Tensor | None,
    corr: Tensor | None,
    rows: Tensor | None,
    stop: int,
    read: tuple[int, ...] | None,
    n_layers: int,
) -> Variant | str:
    """The patch to run at site ``s``, or why none is run: "identical" or "after_read"."""
    if rows is not None and len(rows) == 0:
        return "identical"
    if clean is None or corr is None:  # compared but never sliced: out of the metric's reach
        return "after_read"
    p0 = first_diff_pos(clean, corr) if s.pos is None else s.pos  # all-position heads: first difference
    if p0 is None:
        return "identical"
    if p0 >= stop or unreachable(s, read, n_layers):
        return "after_read"
    if s.pos is None and read is not None and s.layer == n_layers - 1:
        # a last-layer head's output at a position reaches that position's logits alone: patch
        # from the first position read (and only the rows that differ there)
        first = min(r for r in read if r >= p0)
        row_differs = differs(clean[:, first:stop], corr[:, first:stop]).flatten(1).any(1)
        if not bool(row_differs.any()):
            return "after_read"
        p0, rows = first, None if bool(row_differs.all()) else torch.nonzero(row_differs).squeeze(1).cpu()
    if s.pos is None:
        return Variant(s, p0, clean[:, p0:stop], corr[:, p0:stop], rows)
    return Variant(s, p0, clean, corr, rows)


def site_activations(
    model: TransformerBridge,
    kind: str,
    sites: list[Site],
    clean_cache: CacheLike,
    corr_cache: CacheLike,
    device: torch.device,
    out_of_reach: Callable[[Site], bool],
) -> Iterator[tuple[Site, Tensor | None, Tensor | None, Tensor | None]]:
    """For each site: (site, clean slice, corrupted slice, the rows where they differ beyond float
    rounding: None for every row, empty for none); per-position sites are compared a whole layer
    at a time, and those ``out_of_reach(site)`` of the metric come without slices (None)."""
    by_layer: dict[int, tuple[Tensor, Tensor]] = {}
    # per layer of per-position sites: differences [B, pos(, head)] and which sites differ in some/every row
    compared: dict[int, tuple[Tensor, list[Any], list[Any]]] = {}
    for s in sites:
        if s.layer not in by_layer:
            clean = activation(clean_cache, kind, s.layer, model).to(device)
            corr = activation(corr_cache, kind, s.layer, model)
            if clean.shape != corr.shape:
                raise ValueError(
                    f"clean cache {hook_name(kind, s.layer)} has shape {tuple(clean.shape)}; the corrupted "
                    f"run has {tuple(corr.shape)} (same batch and length needed)"
                )
            by_layer[s.layer] = (clean, corr)
        clean, corr = by_layer[s.layer]
        if s.pos is None:
            c, x = site_slice(clean, s), site_slice(corr, s)
            row_differs = differs(c, x).flatten(1).any(1)
            yield s, c, x, None if bool(row_differs.all()) else torch.nonzero(row_differs).squeeze(1).cpu()
            continue
        if s.layer not in compared:  # per-position sites: compared once per layer
            differ = site_differences(clean, corr, kind in HEAD_KINDS)
            compared[s.layer] = (differ, differ.any(0).tolist(), differ.all(0).tolist())
        differ, some_rows, every_row = compared[s.layer]
        some, every = some_rows[s.pos], every_row[s.pos]
        if s.head is not None:
            some, every = some[s.head], every[s.head]
        if not some:
            yield s, None, None, torch.zeros(0, dtype=torch.long)  # identical in every row
        elif out_of_reach(s):
            yield s, None, None, None
        else:
            row_differs = differ[:, s.pos, s.head] if s.head is not None else differ[:, s.pos]
            rows = None if every else torch.nonzero(row_differs).squeeze(1).cpu()
            yield s, site_slice(clean, s), site_slice(corr, s), rows


def unreachable(site: Site, read: tuple[int, ...] | None, n_layers: int) -> bool:
    """A patch of the last layer's output at one position reaches only that position's logits."""
    last_layer_output = site.kind != "resid_pre" and site.layer == n_layers - 1 and site.pos is not None
    return read is not None and last_layer_output and site.pos not in read
