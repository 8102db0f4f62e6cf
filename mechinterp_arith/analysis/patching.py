"""Batched activation patching: many patched sites per forward pass, TL-compatible drop-ins.

``transformer_lens.patching`` runs one forward pass of the whole corrupted batch per patched site.
Here the patched variants are stacked along the batch (variant-major: rows ``s*B .. s*B+B-1`` hold
variant ``s``) and run in chunks of at most ``chunk_size`` rows. Two paths run the chunks:

``fast``   the model's plain forward (:class:`~mechinterp_arith.core.plain_forward.PlainGPT`: the pre-LN
           GPT :mod:`mechinterp_arith.core.model` builds, under every position scheme), checked
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
value is the metric on the unpatched corrupted logits, and the result reports it
(``PatchResult.identical``; the drop-ins warn with :class:`IdenticalSitesWarning`). Every other patch
checks that its write changed the activation and that its hook fired (RuntimeError otherwise),
and the result records how far each patch moved the logits (``PatchResult.max_logit_change``).

>>> from mechinterp_arith import load
>>> from mechinterp_arith.analysis.metrics import logit_diff_metric
>>> from mechinterp_arith.analysis.prompt_pairs import change_operand_digit
>>> ckpt = load("add3")
>>> pairs = change_operand_digit(ckpt.task, n=64, operand="b", place=0, seed=0)
>>> _, clean_cache = ckpt.model.run_with_cache(pairs.clean_tokens)
>>> metric = logit_diff_metric(pairs, k=0)
>>> get_act_patch_resid_pre(ckpt.model, pairs.corrupted_tokens, clean_cache, metric).shape
torch.Size([3, 15])
>>> result = patch_each_site(ckpt.model, pairs.corrupted_tokens, clean_cache, metric, "z", by_pos=True)
>>> result.values.shape, result.axis_names                 # [layer, pos, head] as in TL
(torch.Size([3, 15, 3]), ('layer', 'pos', 'head'))
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from ..core.model import model_device
from ..core.plain_forward import PlainCache, PlainGPT, checked_plain_forward
from .metrics import Metric, infer_read_positions, reads_positions  # noqa: F401 - part of this module's API (patching.reads_positions)
from .patch_runners import Scoring, mask_unread, run_fast, run_hooks
from .patch_sites import (
    HEAD_KINDS,
    CacheLike,
    Site,
    Variant,
    activation,
    hook_name,
    site_activations,
    site_grid,
    unreachable,
    variant_of,
)

METHODS = ("auto", "fast", "hooks")
DEFAULT_CHUNK = 1024
PROBE_ROWS = 8  # rows of the first corrupted batch that check the plain forward against the bridge


class IdenticalSitesWarning(UserWarning):
    """Some patched sites hold the same activation in the clean and corrupted runs."""


@dataclass
class PatchResult:
    """Results of patching every site of one kind.

    ``values`` is ``[*site_axes, *metric_shape]`` (site axes as TL orders them: ``layer, pos`` for
    residual/attn_out/mlp_out, ``layer, pos, head`` or ``layer, head`` for heads). ``identical``
    marks sites whose clean and corrupted activations are equal in every row (their value is the
    unpatched corrupted metric); ``after_read`` marks sites that causally cannot change the
    positions the metric reads (declared or inferred ``reads_positions``): after the last of them,
    or the last layer's output at a position it does not read (not run; value = baseline);
    ``max_logit_change`` is max |patched - corrupted| over the logits the metric reads.
    """

    kind: str
    axis_names: tuple[str, ...]
    values: Tensor
    identical: Bool[Tensor, ...]
    max_logit_change: Float[Tensor, ...]
    baseline: Tensor
    method: str
    n_forward_rows: int = 0
    after_read: Bool[Tensor, ...] | None = None

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


def _ndindex(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    import itertools

    return itertools.product(*[range(n) for n in shape])


# ---- the plain forward (fast path) --------------------------------------------------------------
_PLAIN_POINTS = ("resid_pre", "z", "attn_out", "resid_mid", "mlp_out", "resid_post")


def _plain_run(
    model: TransformerBridge, tokens: Tensor
) -> tuple[PlainGPT | None, Tensor | None, PlainCache | None, dict[str, Tensor] | None]:
    """The corrupted run through the checked plain forward: (plain, logits, its cache, the same
    activations under TL hook names), or Nones when the plain forward must not be used."""
    plain = checked_plain_forward(model, tokens[:PROBE_ROWS])
    if plain is None:
        return None, None, None, None
    last = _LAST_RUN.get(plain)
    if last is not None and last[0].shape == tokens.shape and torch.equal(last[0], tokens):
        return plain, last[1].clone(), last[2], last[3]
    logits, cache = plain.run(tokens)
    named = {hook_name(point, layer): t for (point, layer), t in cache.items() if point in _PLAIN_POINTS}
    if sum(t.numel() for t in cache.values()) <= KEEP_RUN_FLOATS:
        _LAST_RUN[plain] = (tokens.clone(), logits.clone(), cache, named)
    return plain, logits, cache, named


# the last corrupted run per plain forward, reused by the next sweep of the same tokens (sweeps of
# several kinds usually share their inputs); the engine never writes its tensors (patches write
# copies) and the metric gets a copy of its logits
_LAST_RUN: weakref.WeakKeyDictionary[PlainGPT, tuple[Tensor, Tensor, PlainCache, dict[str, Tensor]]] = (
    weakref.WeakKeyDictionary()
)
KEEP_RUN_FLOATS = 2**24  # larger runs (64 MiB of activations) are not kept


# ---- the engine -------------------------------------------------------------------------------------
def patch_each_site(
    model: TransformerBridge,
    corrupted_tokens: Int[Tensor, "batch pos"],
    clean_cache: CacheLike,
    patching_metric: Metric,
    kind: str,
    by_pos: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    method: str = "auto",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    infer_reads: bool = True,
) -> PatchResult:
    """Patch every site of ``kind`` from ``clean_cache`` into the corrupted run.

    Args:
        kind: resid_pre, resid_mid, resid_post, attn_out, mlp_out (sites (layer, pos)), z or result
            (sites (layer, pos, head) when ``by_pos`` else (layer, head), every position at once).
        patching_metric: called once per patched variant with its logits [batch, pos, vocab];
            any tensor it returns is stacked (scalar for TL-style metrics).
        chunk_size: rows per forward pass (variants x batch); bounds memory.
        method: "auto", "fast" or "hooks" (see the module docstring).
        layers, positions: restrict the sweep; sites outside keep NaN values.
        infer_reads: for a metric that declares no ``reads_positions``, find the positions it
            reads by probing it on the corrupted logits
            (:func:`~mechinterp_arith.analysis.metrics.infer_read_positions`) and treat them as
            declared; False recomputes every position.

    Returns a :class:`PatchResult`; e.g. ``values`` [3, 15] for resid_pre on add3.
    """
    _check_arguments(model, corrupted_tokens, method, chunk_size)
    cfg = model.cfg
    device = model_device(model)
    tokens = corrupted_tokens.to(device)
    B, P = tokens.shape
    sites, axis_names, grid = _selected_sites(kind, by_pos, cfg, P, layers, positions)
    _check_clean_cache(clean_cache, kind, sites, model, B, P)
    with torch.inference_mode():
        plain, base_logits, plain_cache, corr_cache = _corrupted_run(model, tokens, method, kind, sites)
        baseline = torch.as_tensor(patching_metric(base_logits)).detach()
        read = _checked_read_positions(patching_metric, P, base_logits, baseline, infer_reads)

    values = torch.full(grid + tuple(baseline.shape), float("nan"), dtype=torch.float32)
    identical = torch.zeros(grid, dtype=torch.bool)
    after_read = torch.zeros(grid, dtype=torch.bool)
    max_change = torch.full(grid, float("nan"))
    variants: list[Variant] = []
    unrun: dict[str, list[tuple[int, ...]]] = {"identical": [], "after_read": []}
    stop = P if read is None else read[-1] + 1  # positions from here on cannot reach the metric

    def out_of_reach(s: Site) -> bool:  # per-position sites only
        return (s.pos is not None and s.pos >= stop) or unreachable(s, read, cfg.n_layers)

    for s, clean, corr, rows in site_activations(model, kind, sites, clean_cache, corr_cache, device, out_of_reach):
        variant = variant_of(s, clean, corr, rows, stop, read, cfg.n_layers)
        if isinstance(variant, Variant):
            variants.append(variant)
        else:  # identical, or the patch cannot change what the metric reads: the baseline
            unrun[variant].append(s.index)
    for why, flags in (("identical", identical), ("after_read", after_read)):
        if unrun[why]:  # one write per grid (not one per site)
            where = tuple(torch.tensor(axis) for axis in zip(*unrun[why]))
            flags[where], values[where], max_change[where] = True, baseline.float(), 0.0

    scoring = Scoring(patching_metric, base_logits, read, values, max_change, chunk_size)
    n_rows = 0
    if plain is not None and plain_cache is not None:
        n_rows = run_fast(plain, tokens, variants, plain_cache, scoring)
    elif variants:
        n_rows = run_hooks(model, tokens, variants, scoring)
    return PatchResult(
        kind,
        axis_names,
        values,
        identical,
        max_change,
        baseline,
        "fast" if plain is not None else "hooks",
        n_rows,
        after_read,
    )


def _check_arguments(model: TransformerBridge, corrupted_tokens: Tensor, method: str, chunk_size: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if model.training:
        raise ValueError("activation patching needs model.eval() first")
    if corrupted_tokens.ndim != 2:
        raise ValueError(f"corrupted_tokens must be [batch, pos], got shape {tuple(corrupted_tokens.shape)}")


def _selected_sites(
    kind: str,
    by_pos: bool,
    cfg: TransformerBridgeConfig,
    P: int,
    layers: Sequence[int] | None,
    positions: Sequence[int] | None,
) -> tuple[list[Site], tuple[str, ...], tuple[int, ...]]:
    sites, axis_names, grid = site_grid(kind, by_pos, cfg.n_layers, P, cfg.n_heads)
    for name, sel, hi in (("layer", layers, cfg.n_layers), ("position", positions, P)):
        for v in sel or []:
            if not 0 <= int(v) < hi:
                raise ValueError(f"{name} {v} is out of range (0..{hi - 1})")
    if layers is not None:
        sites = [s for s in sites if s.layer in set(int(v) for v in layers)]
    if positions is not None:
        sites = [s for s in sites if s.pos is not None and s.pos in set(int(v) for v in positions)]
    return sites, axis_names, grid


def _corrupted_run(
    model: TransformerBridge, tokens: Tensor, method: str, kind: str, sites: list[Site]
) -> tuple[PlainGPT | None, Tensor, PlainCache | None, CacheLike]:
    """(plain, logits, plain cache, TL-named cache) of the corrupted run: through the plain forward
    when ``method`` allows and it is accepted, else through the bridge (plain and its cache None)."""
    if method in ("auto", "fast") and sites:
        plain, logits, plain_cache, named = _plain_run(model, tokens)
        if plain is not None:
            assert logits is not None and plain_cache is not None and named is not None  # set together
            return plain, logits, plain_cache, named
        if method == "fast":
            raise ValueError(
                "method='fast' needs a pre-LN GPT (as build_model makes), no hooks attached, whose "
                "plain forward reproduces the bridge's logits; use method='hooks'"
            )
    needed = {hook_name("z" if kind == "result" else kind, s.layer) for s in sites}
    base_logits, corr_cache = model.run_with_cache(tokens, names_filter=lambda n: n in needed)
    return None, base_logits, None, corr_cache


def _checked_read_positions(
    metric: Metric, P: int, base_logits: Tensor, baseline: Tensor, infer: bool
) -> tuple[int, ...] | None:
    """The positions the metric reads: declared (checked), else inferred (None when unknown)."""
    declared_read = getattr(metric, "reads_positions", None)
    declared = declared_read is not None
    found = declared_read if declared else infer_read_positions(metric, base_logits) if infer else None
    if found is None:
        return None
    read = tuple(sorted({int(p) for p in found}))
    if not read or read[0] < 0 or read[-1] >= P:
        raise ValueError(f"patching_metric.reads_positions must name positions in 0..{P - 1}, got {read}")
    check = torch.as_tensor(metric(mask_unread(base_logits.clone(), read))).detach()
    if check.shape != baseline.shape or not torch.allclose(check.float(), baseline.float()):
        if not declared:  # the positions probed one at a time are read together: recompute all
            return None
        raise ValueError(
            f"patching_metric.reads_positions says it reads only positions {list(read)}, but its value "
            "changes when the logits at other positions are NaN"
        )
    return read


def _check_clean_cache(
    clean_cache: CacheLike, kind: str, sites: list[Site], model: TransformerBridge, B: int, P: int
) -> None:
    for s in sites[:1]:
        t = activation(clean_cache, kind, s.layer, model)
        if t.shape[0] != B or t.shape[1] != P:
            raise ValueError(
                f"clean cache activations are [{t.shape[0]}, {t.shape[1]}, ...] but corrupted_tokens are "
                f"[{B}, {P}]: clean and corrupted prompts must have the same batch and length"
            )


# ---- TL drop-ins ----------------------------------------------------------------------------------
def _drop_in(kind: str, by_pos: bool, doc: str) -> Callable[..., Any]:
    def fn(
        model: TransformerBridge,
        corrupted_tokens: Int[Tensor, "batch pos"],
        clean_cache: CacheLike,
        patching_metric: Metric,
        *,
        reduce: str = "scalar",
        return_index_df: bool = False,
        chunk_size: int = DEFAULT_CHUNK,
        method: str = "auto",
        warn_identical: bool = True,
        infer_reads: bool = True,
    ) -> Tensor | tuple[Tensor, pd.DataFrame]:
        if reduce not in ("scalar", "mean"):
            raise ValueError(f"reduce must be 'scalar' or 'mean' here, got {reduce!r}")
        sweep = patch_each_site(
            model,
            corrupted_tokens,
            clean_cache,
            patching_metric,
            kind,
            by_pos,
            chunk_size=chunk_size,
            method=method,
            infer_reads=infer_reads,
        )
        out = sweep.values
        extra = out.ndim - len(sweep.axis_names)
        if reduce == "scalar" and extra:
            raise ValueError(
                f"patching_metric must return a scalar under reduce='scalar', got shape {tuple(out.shape[-extra:])}"
            )
        if reduce == "mean":
            out = out.mean(dim=-1) if extra else out
        out = out.to(model_device(model))
        if warn_identical and bool(sweep.identical.any()):
            n, total = int(sweep.identical.sum()), sweep.identical.numel()
            listed = ", ".join(str(tuple(i.tolist())) for i in torch.nonzero(sweep.identical)[:8])
            warnings.warn(
                f"{n} of {total} {kind} sites ({'/'.join(sweep.axis_names)}) have identical clean and corrupted "
                f"activations, so patching them is a no-op (value = unpatched corrupted metric): {listed}"
                f"{' ...' if n > 8 else ''}",
                IdenticalSitesWarning,
                stacklevel=2,
            )
        if return_index_df:
            from transformer_lens.patching import make_df_from_ranges

            return out, make_df_from_ranges(
                list(sweep.identical.shape),
                list(a.replace("head", "head_index") if kind not in HEAD_KINDS else a for a in sweep.axis_names),
            )
        return out

    fn.__doc__ = (
        doc
        + """

    Same arguments and return value as the ``transformer_lens.patching`` function of the same name
    (``reduce`` "scalar"/"mean" and ``return_index_df`` as there), computed with batched patched
    variants (:func:`patch_each_site`). Extra keywords: ``chunk_size``, ``method``, ``warn_identical``,
    ``infer_reads``.
    """
    )
    return fn


get_act_patch_resid_pre = _drop_in(
    "resid_pre", True, "Patch the residual stream before each block, per (layer, pos): [n_layers, pos]."
)
get_act_patch_resid_mid = _drop_in(
    "resid_mid", True, "Patch the residual stream between attention and MLP, per (layer, pos): [n_layers, pos]."
)
get_act_patch_attn_out = _drop_in(
    "attn_out", True, "Patch each attention layer's output, per (layer, pos): [n_layers, pos]."
)
get_act_patch_mlp_out = _drop_in("mlp_out", True, "Patch each MLP layer's output, per (layer, pos): [n_layers, pos].")
get_act_patch_attn_head_out_by_pos = _drop_in(
    "z", True, "Patch each head's z, per (layer, pos, head): [n_layers, pos, n_heads]."
)
get_act_patch_attn_head_out_all_pos = _drop_in(
    "z", False, "Patch each head's z at every position, per (layer, head): [n_layers, n_heads]."
)
for _f, _n in [
    (get_act_patch_resid_pre, "get_act_patch_resid_pre"),
    (get_act_patch_resid_mid, "get_act_patch_resid_mid"),
    (get_act_patch_attn_out, "get_act_patch_attn_out"),
    (get_act_patch_mlp_out, "get_act_patch_mlp_out"),
    (get_act_patch_attn_head_out_by_pos, "get_act_patch_attn_head_out_by_pos"),
    (get_act_patch_attn_head_out_all_pos, "get_act_patch_attn_head_out_all_pos"),
]:
    _f.__name__ = _f.__qualname__ = _n


def patch_sweep(*args: Any, **kwargs: Any) -> PatchResult:
    """Deprecated name of :func:`patch_each_site` ("sweep" names the sweep package's grids of training runs)."""
    warnings.warn("patch_sweep() is renamed patch_each_site()", DeprecationWarning, stacklevel=2)
    return patch_each_site(*args, **kwargs)
