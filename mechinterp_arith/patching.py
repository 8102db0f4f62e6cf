"""Batched activation patching: many patched sites per forward pass, TL-compatible drop-ins.

``transformer_lens.patching`` runs one forward pass of the whole corrupted batch per patched site.
Here the patched variants are stacked along the batch (variant-major: rows ``s*B .. s*B+B-1`` hold
variant ``s``) and run in chunks of at most ``chunk_size`` rows. Two paths run the chunks:

``fast``   the model's plain forward (:class:`~mechinterp_arith.plain_forward.PlainGPT`: pre-LN GPT
           with learned positions, the architecture :mod:`mechinterp_arith.model` builds), checked
           against the bridge's logits once per set of weights and used only while no hooks are
           attached. It also runs the corrupted baseline. A variant patched at layer ``l`` and
           position ``p`` only recomputes layers ``>= l`` at positions ``>= p``: everything
           upstream is exactly the corrupted run, reused from its cache (keys and values included).
``hooks``  any TL-hooked model: the corrupted run and the stacked variants run through the bridge
           (``model.run_with_hooks``) with one hook per hooked activation that writes each
           variant's clean slice.

``method="auto"`` uses ``fast`` when the plain forward is accepted, else ``hooks``.

No silent no-ops: a site whose clean and corrupted activations are identical for every row, to
float rounding (``SAME_RTOL``; e.g. positions before the first differing token), is not run: its
value is the metric on the unpatched corrupted logits, and the sweep reports it
(``Sweep.identical``; the drop-ins warn with :class:`IdenticalSitesWarning`). Every other patch
checks that its write changed the activation and that its hook fired (RuntimeError otherwise),
and the sweep records how far each patch moved the logits (``Sweep.max_logit_change``).

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
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .plain_forward import PlainGPT, SharedPrefix, checked_plain_forward

KINDS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "result")
HEAD_KINDS = ("z", "result")
METHODS = ("auto", "fast", "hooks")
DEFAULT_CHUNK = 1024
SLACK = 1.0  # see _chunks_by_start
PROBE_ROWS = 8  # rows of the first corrupted batch that check the plain forward against the bridge
SAME_RTOL = 1e-5  # clean and corrupted activations this close (relative to their scale) count as equal


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
    unpatched corrupted metric); ``after_read`` marks sites after every position a metric with
    declared ``reads_positions`` reads (not run: causally they cannot change it; value = baseline);
    ``max_logit_change`` is max |patched - corrupted| over the logits the metric reads.
    """

    kind: str
    axis_names: tuple[str, ...]
    values: Tensor
    identical: Bool[Tensor, "..."]
    max_logit_change: Float[Tensor, "..."]
    baseline: Tensor
    method: str
    n_forward_rows: int = 0
    after_read: Bool[Tensor, "..."] | None = None

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
            row["after_read"] = bool(self.after_read[idx]) if self.after_read is not None else False
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


def _differs(clean: Tensor, corr: Tensor) -> Bool[Tensor, "..."]:
    """Where clean and corrupted activations differ by more than float rounding (``SAME_RTOL`` of
    the activation's scale): the corrupted run may come from the plain forward and the clean one
    from the bridge, which agree only to rounding."""
    scale = max(float(clean.abs().max()), float(corr.abs().max()), 1.0) if clean.numel() else 1.0
    return (clean - corr).abs() > SAME_RTOL * scale


def _same(clean: Tensor, corr: Tensor) -> bool:
    return not bool(_differs(clean, corr).any())


def _first_diff_pos(clean: Tensor, corr: Tensor) -> int | None:
    """First position (dim 1) where the two differ in any row, None when identical."""
    diff = _differs(clean, corr).reshape(clean.shape[0], clean.shape[1], -1).any(-1).any(0)
    nz = torch.nonzero(diff)
    return int(nz[0]) if len(nz) else None


# ---- the plain forward (fast path) --------------------------------------------------------------
_PLAIN_POINTS = ("resid_pre", "z", "attn_out", "resid_mid", "mlp_out", "resid_post")


def _plain_run(model, tokens) -> tuple[PlainGPT | None, Tensor | None, dict | None, dict | None]:
    """The corrupted run through the checked plain forward: (plain, logits, its cache, the same
    activations under TL hook names), or Nones when the plain forward must not be used."""
    plain = checked_plain_forward(model, tokens[:PROBE_ROWS])
    if plain is None:
        return None, None, None, None
    logits, cache = plain.run(tokens)
    named = {hook_name(point, layer): t for (point, layer), t in cache.items() if point in _PLAIN_POINTS}
    return plain, logits, cache, named


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
    plain = plain_cache = None
    with torch.inference_mode():
        if method in ("auto", "fast") and sites:
            plain, base_logits, plain_cache, corr_cache = _plain_run(model, tokens)
            if plain is None and method == "fast":
                raise ValueError("method='fast' needs a pre-LN GPT with learned positions, no hooks attached, whose "
                                 "plain forward reproduces the bridge's logits; use method='hooks'")
        if plain is None:
            base_logits, corr_cache = model.run_with_cache(tokens, names_filter=lambda n: n in needed)
        baseline = torch.as_tensor(patching_metric(base_logits)).detach()
        read = _checked_read_positions(patching_metric, P, base_logits, baseline)
    stop = P if read is None else read[-1] + 1  # positions from here on cannot reach the metric

    values = torch.full(grid + tuple(baseline.shape), float("nan"), dtype=torch.float32)
    identical = torch.zeros(grid, dtype=torch.bool)
    after_read = torch.zeros(grid, dtype=torch.bool)
    max_change = torch.full(grid, float("nan"))
    variants: list[_Variant] = []
    for s in sites:
        clean = _site_slice(_act(clean_cache, kind, s.layer, model), s).to(device)
        corr = _site_slice(_act(corr_cache, kind, s.layer, model), s)
        if clean.shape != corr.shape:
            raise ValueError(f"clean cache {hook_name(kind, s.layer)} has shape {tuple(clean.shape)} at this site; "
                             f"the corrupted run has {tuple(corr.shape)} (same batch and length needed)")
        if _same(clean, corr):
            identical[s.index] = True
            values[s.index] = baseline.float()
            max_change[s.index] = 0.0
            continue
        p0 = _first_diff_pos(clean, corr) if s.pos is None else s.pos  # all-position heads: first difference
        if p0 >= stop:  # causally after every position the metric reads: the patch cannot change it
            after_read[s.index] = True
            values[s.index] = baseline.float()
            max_change[s.index] = 0.0
        elif s.pos is None:
            variants.append(_Variant(s, p0, clean[:, p0:stop], corr[:, p0:stop]))
        else:
            variants.append(_Variant(s, p0, clean, corr))

    used = "fast" if plain is not None else "hooks"
    rows = 0
    if plain is not None:
        rows = _run_fast(plain, tokens, variants, base_logits, patching_metric, chunk_size, values, max_change,
                         plain_cache, read)
    elif variants:
        rows = _run_hooks(model, tokens, variants, base_logits, patching_metric, chunk_size, values, max_change, read)
    return Sweep(kind, axis_names, values, identical, max_change, baseline, used, rows, after_read)


def reads_positions(metric: Callable, positions: Sequence[int]) -> Callable:
    """Declare the logit positions ``metric`` reads; returns the metric.

    A sweep then recomputes positions only up to the last of them, does not run sites after it
    (causally they cannot change the metric: value = baseline, ``Sweep.after_read``) and passes
    NaN logits at the positions not read, so a wrong declaration shows. It is also checked once
    per sweep: the metric of the corrupted logits must not change when the other positions are
    NaN. The metrics of :mod:`mechinterp_arith.prompt_pairs` declare theirs.

    >>> metric = reads_positions(lambda logits: logits[:, 10, 3].mean(), [10])
    """
    metric.reads_positions = tuple(sorted({int(p) for p in positions}))
    return metric


def _checked_read_positions(metric, P: int, base_logits: Tensor, baseline: Tensor) -> tuple[int, ...] | None:
    read = getattr(metric, "reads_positions", None)
    if read is None:
        return None
    read = tuple(sorted({int(p) for p in read}))
    if not read or read[0] < 0 or read[-1] >= P:
        raise ValueError(f"patching_metric.reads_positions must name positions in 0..{P - 1}, got {read}")
    check = torch.as_tensor(metric(_mask_unread(base_logits.clone(), read))).detach()
    if check.shape != baseline.shape or not torch.allclose(check.float(), baseline.float()):
        raise ValueError(f"patching_metric.reads_positions says it reads only positions {list(read)}, but its value "
                         "changes when the logits at other positions are NaN")
    return read


def _mask_unread(logits: Tensor, read: tuple[int, ...] | None) -> Tensor:
    """NaN (in place) at the positions the metric does not read."""
    if read is not None:
        unread = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device)
        unread[list(read)] = False
        logits[:, unread] = float("nan")
    return logits


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


def _evaluate(metric, logits: Tensor, variants, values, max_change, base_logits, S, B, read):
    logits = _mask_unread(logits, read)
    cols = slice(None) if read is None else list(read)
    for s, var in enumerate(variants):
        lg = logits[s * B : (s + 1) * B]
        values[var.site.index] = torch.as_tensor(metric(lg)).detach().float().cpu()
        max_change[var.site.index] = float((lg[:, cols] - base_logits[:, cols]).abs().max())


def _run_fast(plain: PlainGPT, tokens, variants, base_logits, metric, chunk_size, values, max_change, cc,
              read: tuple[int, ...] | None) -> int:
    """Variants grouped by where they start. A resid_pre patch at (l, p) reruns layers >= l at
    positions >= p. Any other patch at (l, p) leaves layer l's attention untouched and changes
    only position p within layer l, so it reruns layer l from z at position p alone and layers > l
    at positions >= p; all-position head patches rerun layer l from z at positions >= p0.
    Positions after the last one the metric reads (``read``) are not computed; when the metric
    reads only that one among the recomputed positions, the last layer computes only it."""
    B, P = tokens.shape
    end = P if read is None else read[-1] + 1
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
            for chunk in _chunks_by_start(group, per_chunk, end):
                S = len(chunk)
                p0 = min(v.p0 for v in chunk)
                last_only = read is not None and all(r < p0 or r == end - 1 for r in read)
                past = SharedPrefix({j: cc[("k", j)][:, :, :p0] for j in range(plain.L)},
                                    {j: cc[("v", j)][:, :, :p0] for j in range(plain.L)}) if p0 else None
                fired = [False] * S
                patch = _make_fast_patch(plain, chunk, layer, p0, S, B, fired)
                if mode == "pre":
                    x = cc[("resid_pre", layer)][:, p0:end].repeat(S, 1, 1)
                    x = plain.blocks(x, layer, p0, past, patch, S=S, last_only=last_only)
                else:
                    stop = max(v.site.pos for v in chunk) + 1 if mode == "point" else end
                    x = cc[("resid_pre", layer)][:, p0:stop].repeat(S, 1, 1)
                    z = cc[("z", layer)][:, p0:stop].repeat(S, 1, 1, 1)
                    x = plain.finish_layer(layer, x, z, patch)
                    if stop < end:
                        x = torch.cat([x, cc[("resid_post", layer)][:, stop:end].repeat(S, 1, 1)], dim=1)
                    x = plain.blocks(x, layer + 1, p0, past, None, S=S, last_only=last_only)
                _require_fired(fired, chunk)
                logits = base_logits.repeat(S, 1, 1)
                logits[:, end - x.shape[1] : end] = plain.logits(x)  # x: positions p0..end-1, or end-1 alone
                rows += S * B
                _evaluate(metric, logits, chunk, values, max_change, base_logits, S, B, read)
    return rows


def _make_fast_patch(plain, chunk, layer, p0, S, B, fired):
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
                corr_result = zv[s, :, q, site.head] @ plain.W_O[layer, site.head]
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


def _run_hooks(model, tokens, variants, base_logits, metric, chunk_size, values, max_change, read) -> int:
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
            _evaluate(metric, logits, chunk, values, max_change, base_logits, S, B, read)
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
                q = slice(v.p0, v.p0 + v.clean.shape[1]) if site.pos is None else site.pos
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
