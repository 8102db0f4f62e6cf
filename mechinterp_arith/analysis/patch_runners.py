"""The two runners of batched patching: stacked patched variants through the plain forward
(``fast``) or through the hooked bridge (``hooks``). See :mod:`~mechinterp_arith.analysis.patching`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from ..core.plain_attention import Numbering, SharedPrefix
from ..core.plain_forward import Patch, PlainCache, PlainGPT, Segment
from .patch_sites import Site, Variant, hook_name

SLACK = 1.0  # see _chunks_by_start


def mask_unread(logits: Tensor, read: tuple[int, ...] | None) -> Tensor:
    """NaN (in place) at the positions the metric does not read."""
    if read is not None:
        unread = [p for p in range(logits.shape[1]) if p not in read]
        logits.index_fill_(1, torch.tensor(unread, dtype=torch.long, device=logits.device), float("nan"))
    return logits


@dataclass
class Scoring:
    """How a runner scores each patched variant and where the scores go.

    ``metric`` maps a variant's logits [B, pos, vocab] to its value; ``read`` are the positions it
    reads (None: all); ``values`` and ``max_change`` are the sweep's result grids, written at each
    variant's ``site.index``; ``base_logits`` are the unpatched corrupted logits.
    """

    metric: Callable[[Tensor], Tensor]
    base_logits: Tensor
    read: tuple[int, ...] | None
    values: Tensor
    max_change: Tensor
    chunk_size: int
    _masked_base: Tensor | None = None  # base_logits, NaN where the metric does not read

    @property
    def end(self) -> int:
        """Positions from here on are never computed (after the last one read)."""
        return self.base_logits.shape[1] if self.read is None else self.read[-1] + 1

    def record(self, logits: Tensor, variants: list[Variant], masked: bool = False) -> None:
        """Score the stacked logits [S*B, pos, vocab] of ``variants`` (variant-major rows); NaN is
        written at the positions the metric does not read unless ``masked`` says it is there."""
        B = self.base_logits.shape[0]
        logits = logits if masked else mask_unread(logits, self.read)
        cols = slice(None) if self.read is None else list(self.read)
        change = (logits[:, cols] - self.base_logits[:, cols].repeat(len(variants), 1, 1)).abs()
        largest = change.view(len(variants), -1).amax(1).tolist()
        for s, var in enumerate(variants):
            self.values[var.site.index] = (
                torch.as_tensor(self.metric(logits[s * B : (s + 1) * B])).detach().float().cpu()
            )
            self.max_change[var.site.index] = largest[s]

    def stacked_logits(self, plain: PlainGPT, x: Tensor, S: int, rows: Tensor) -> Tensor:
        """The logits [S*B, pos, vocab] of S stacked variants: the unpatched logits, except at the
        stacked ``rows`` (indices into S*B), whose final residual ``x`` [len(rows), q, d_model]
        holds positions ``end-q..end-1``; unembedded only at the positions the metric reads (NaN
        at the others)."""
        end, q = self.end, x.shape[1]
        if self._masked_base is None:
            self._masked_base = mask_unread(self.base_logits.clone(), self.read)
        logits = self._masked_base.repeat(S, 1, 1)
        cols = list(range(end - q, end)) if self.read is None else [r for r in self.read if r >= end - q]
        if cols:
            local = torch.tensor([c - (end - q) for c in cols])
            logits[rows.unsqueeze(1), torch.tensor(cols).unsqueeze(0)] = plain.logits(x[:, local])
        return logits


def _chunks_by_start(variants: list[Variant], per_chunk: int, P: int, slack: float = SLACK) -> Iterator[list[Variant]]:
    """Chunks of variants sorted by start position (descending); a chunk grows while it holds
    fewer than ``per_chunk`` and its smallest start recomputes at most ``slack`` x the positions
    its first variant needs."""
    chunk: list[Variant] = []
    for v in variants:
        if chunk and (len(chunk) >= per_chunk or (P - v.p0) > slack * (P - chunk[0].p0)):
            yield chunk
            chunk = []
        chunk.append(v)
    if chunk:
        yield chunk


def _chunks(items: list[Variant], per_chunk: int) -> Iterator[list[Variant]]:
    for i in range(0, len(items), per_chunk):
        yield items[i : i + per_chunk]


def run_fast(plain: PlainGPT, tokens: Tensor, variants: list[Variant], corrupted: PlainCache, scoring: Scoring) -> int:
    """Run ``variants`` through the plain forward, restarting from the corrupted run's cache
    (``corrupted``: :meth:`PlainGPT.run`'s cache); returns the number of rows run.

    Variants are grouped by where they start. A resid_pre patch at (l, p) reruns layers >= l at
    positions >= p. Any other patch at (l, p) leaves layer l's attention untouched and changes
    only position p within layer l, so it reruns layer l from z at position p alone and layers > l
    at positions >= p; all-position head patches rerun layer l from z at positions >= p0.
    Positions after the last one the metric reads are not computed; when the metric reads only
    that one among the recomputed positions, the last layer computes only it. Only the rows
    (pairs) whose activation the patch changes are run (``Variant.rows``): the others keep the
    corrupted logits, exactly."""
    B = tokens.shape[0]
    groups: dict[tuple[str, int], list[Variant]] = {}
    for v in variants:
        mode = "pre" if v.site.kind == "resid_pre" else ("point" if v.site.pos is not None else "span")
        groups.setdefault((mode, v.site.layer), []).append(v)
    per_chunk = max(1, scoring.chunk_size // B)
    rows = 0
    numbering = plain.numbering(tokens)  # the corrupted rows' (each variant row is a copy of one)
    with torch.inference_mode():
        for (mode, layer), group in sorted(groups.items()):
            # variants of one chunk share a start position (the chunk's smallest): positions
            # between it and a variant's own site are recomputed unchanged
            group = sorted(group, key=lambda v: -v.p0)
            for chunk in _chunks_by_start(group, per_chunk, scoring.end):
                stack = _Stack(chunk, B)
                x = _run_chunk(
                    plain, chunk, stack, mode, layer, corrupted, scoring, numbering
                )  # positions p0..end-1, or end-1 alone
                scoring.record(scoring.stacked_logits(plain, x, len(chunk), stack.targets), chunk, masked=True)
                rows += len(stack.base)
    return rows


class _Stack:
    """Where each variant of a chunk sits among the stacked rows: variant ``s`` holds stacked rows
    ``spans[s]``, copies of base rows ``base[spans[s]]``; ``targets`` are their rows in the S*B logits."""

    def __init__(self, chunk: list[Variant], B: int):
        rows = [torch.arange(B) if v.rows is None else v.rows for v in chunk]
        self.full = all(v.rows is None for v in chunk)  # every variant runs every row
        self.base = torch.cat(rows)
        self.targets = torch.cat([r + s * B for s, r in enumerate(rows)])
        ends = torch.tensor([len(r) for r in rows]).cumsum(0).tolist()
        self.spans = [slice(e - len(r), e) for e, r in zip(ends, rows)]

    def take(self, t: Tensor) -> Tensor:
        """Stacked rows of a batch-first tensor of the corrupted run."""
        return t.repeat(len(self.spans), *([1] * (t.dim() - 1))) if self.full else t[self.base]

    def numbering(self, numbering: Numbering) -> Numbering:
        """The stacked rows' position IDs and visible tokens (their base rows')."""
        return numbering.repeat(len(self.spans)) if self.full else numbering.take(self.base)


def _run_chunk(
    plain: PlainGPT,
    chunk: list[Variant],
    stack: _Stack,
    mode: str,
    layer: int,
    cc: PlainCache,
    scoring: Scoring,
    numbering: Numbering,
) -> Tensor:
    """The final residual [rows, positions p0..end-1 (or end-1 alone), d_model] of a chunk of
    variants that share a group (mode, layer)."""
    end, read = scoring.end, scoring.read
    p0 = min(v.p0 for v in chunk)
    last_only = read is not None and all(r < p0 or r == end - 1 for r in read)
    past = None
    if p0:
        keys = {j: cc[("k", j)][:, :, :p0] for j in range(plain.L)}
        values = {j: cc[("v", j)][:, :, :p0] for j in range(plain.L)}
        past = (
            SharedPrefix(keys, values, variants=len(chunk))
            if stack.full
            else SharedPrefix(keys, values, rows=stack.base)
        )
    fired = [False] * len(chunk)
    patch = _make_fast_patch(plain, chunk, stack, layer, p0, fired)
    stacked = numbering if numbering.trivial else stack.numbering(numbering)
    if mode == "pre":
        x = stack.take(cc[("resid_pre", layer)][:, p0:end])
        x = plain.blocks(x, Segment(layer, p0, past), patch=patch, last_only=last_only, numbering=stacked)
    else:
        stop = max(v.site.pos or 0 for v in chunk) + 1 if mode == "point" else end  # "point": one position each
        x = stack.take(cc[("resid_pre", layer)][:, p0:stop])
        x = plain.finish_layer(layer, x, stack.take(cc[("z", layer)][:, p0:stop]), patch=patch)
        if stop < end:
            x = torch.cat([x, stack.take(cc[("resid_post", layer)][:, stop:end])], dim=1)
        x = plain.blocks(x, Segment(layer + 1, p0, past), last_only=last_only, numbering=stacked)
    _require_fired(fired, chunk)
    return x


def _make_fast_patch(
    plain: PlainGPT, chunk: list[Variant], stack: _Stack, layer: int, p0: int, fired: list[bool]
) -> Patch:
    by_point: dict[str, list[tuple[int, Variant]]] = {}
    for s, v in enumerate(chunk):
        by_point.setdefault(v.site.kind, []).append((s, v))

    def patch(point: str, j: int, t: Any) -> None:
        if j != layer or point not in by_point:
            return
        for s, v in by_point[point]:
            site, rows = v.site, stack.spans[s]
            clean = v.clean if v.rows is None else v.clean[v.rows]
            q = slice(v.p0 - p0, None) if site.pos is None else site.pos - p0
            if point == "result":
                attn_out, z = t
                # v.clean is the clean result [B, (Q,) D]: add clean - corrupted result of this head
                corr_result = z[rows, q, site.head] @ plain.W_O[layer, site.head]
                before = attn_out[rows, q].clone()
                attn_out[rows, q] += clean - corr_result
                _check_changed(before, attn_out[rows, q], site)
            else:
                target = (rows, q, site.head) if site.kind == "z" else (rows, q)
                before = t[target].clone()
                t[target] = clean
                _check_changed(before, t[target], site)
            fired[s] = True

    return patch


def _check_changed(before: Tensor, after: Tensor, site: Site) -> None:
    if torch.equal(before, after):
        raise RuntimeError(
            f"patching {site.kind} at layer {site.layer}, pos {site.pos}, head {site.head} did not change "
            "the activation although the clean and corrupted caches differ there"
        )


def _require_fired(fired: list[bool], chunk: list[Variant]) -> None:
    for ok, v in zip(fired, chunk):
        if not ok:
            s = v.site
            raise RuntimeError(
                f"the patch of {hook_name(s.kind, s.layer)} (pos {s.pos}, head {s.head}) never ran: "
                "it would have been a silent no-op"
            )


def run_hooks(model: TransformerBridge, tokens: Tensor, variants: list[Variant], scoring: Scoring) -> int:
    """Generic path: stacked variants through ``model.run_with_hooks``; returns the rows run."""
    B = tokens.shape[0]
    per_chunk = max(1, scoring.chunk_size // B)
    rows = 0
    with torch.inference_mode():
        for chunk in _chunks(variants, per_chunk):
            S = len(chunk)
            fired = [False] * S
            hooks = _make_hooks(model, chunk, S, B, fired)
            logits = model.run_with_hooks(tokens.repeat(S, 1), fwd_hooks=hooks)
            _require_fired(fired, chunk)
            rows += S * B
            scoring.record(logits, chunk)
    return rows


def _make_hooks(
    model: TransformerBridge, chunk: list[Variant], S: int, B: int, fired: list[bool]
) -> list[tuple[str | Callable[..., Any], Callable[..., Any]]]:
    by_name: dict[str, list[tuple[int, Variant]]] = {}
    for s, v in enumerate(chunk):
        site = v.site
        # result and resid_mid are written through hook_attn_out: TL 4.3 bridges expose
        # hook_resid_mid as the input of ln2 only, so editing it there never reaches the residual
        name = hook_name("attn_out" if site.kind in ("result", "resid_mid") else site.kind, site.layer)
        by_name.setdefault(name, []).append((s, v))
    z_seen: dict[int, Tensor] = {}
    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = []
    for name, items in by_name.items():

        def hook(act: Tensor, hook: object, items: list[tuple[int, Variant]] = items) -> Tensor:
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

        def save_z(z: Tensor, hook: object, layer: int = layer) -> Tensor:
            z_seen[layer] = z
            return z

        hooks.insert(0, (hook_name("z", layer), save_z))
    return hooks
