"""Attention of the plain forwards: which keys a query reads, rotary positions, earlier positions' keys.

Every position scheme reaches attention through two per-token quantities that
:class:`~mechinterp_arith.core.position_schemes.PositionRule` computes (the one place that does,
:func:`~mechinterp_arith.core.position_schemes.numbering_of`): the position ID (the row of the
position table, or the angle of a rotary rotation) and whether attention may read the token at
all (abacus and coupling hide zero padding). :class:`Numbering` carries them for the rows of a
forward; ``None`` stands for the common case (IDs 0, 1, 2, ..., every token visible) so that models
with learned positions pay nothing for them.

Attention is the bridge's (TransformerLens 4.3's ``NativeAttention``): causal, keys hidden by the
mask never read, and a query that may read no key at all (e.g. a hidden first token) gets a zero
pattern. Rotary models rotate queries and keys with the bridge's own cos/sin tables (``NativeRotary``:
``rotary_dim`` of each head, base ``rotary_base``, the adjacent-pair convention (x0, x1) -> (-x1, x0)).

>>> q = k = v = torch.randn(2, 1, 3, 4)
>>> visible = torch.tensor([[False, True, True], [True, True, True]])   # row 0 hides its first token
>>> z = causal_attention(q, k, v, 0.5, visible)
>>> z[0, 0, 0].abs().sum().item(), bool(z[1, 0, 0].ne(0).any())         # nothing to read: zero
(0.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass(frozen=True)
class Numbering:
    """Position IDs and key visibility of the rows of a forward, over positions ``0..T-1``.

    ``ids`` [rows, T]: each token's position ID (None: its index, 0, 1, 2, ...); ``visible``
    [rows, T]: whether attention may read the token (None: every token). A forward that starts at
    position ``start`` reads the entries of positions ``start..`` (and the visibility of earlier keys).
    """

    ids: Int[Tensor, "rows pos"] | None = None
    visible: Bool[Tensor, "rows pos"] | None = None

    @classmethod
    def of(cls, ids: Int[Tensor, "rows pos"], visible: Bool[Tensor, "rows pos"]) -> Numbering:
        """From a rule's ``(ids, visible)``, visibility dropped when every token is visible."""
        return cls(ids, None if bool(visible.all()) else visible)

    @property
    def trivial(self) -> bool:
        """IDs 0, 1, 2, ... and every token visible."""
        return self.ids is None and self.visible is None

    def differs(self, other: Numbering, n_pos: int) -> Bool[Tensor, " rows"] | None:
        """Per row, whether the two number positions ``0..n_pos-1`` differently (None: both trivial)."""
        if self.trivial and other.trivial:
            return None
        (i1, v1), (i2, v2) = self._dense(other, n_pos), other._dense(self, n_pos)
        return (i1 != i2).any(1) | (v1 != v2).any(1)

    def differences(
        self, other: Numbering, n_pos: int, device: torch.device
    ) -> tuple[Bool[Tensor, " pos"], Bool[Tensor, " pos"]]:
        """Per position ``0..n_pos-1``: whether some row gives it another ID, and whether some row
        hides it in one numbering and not in the other (``other`` numbers the same rows)."""
        if self.trivial and other.trivial:
            none = torch.zeros(n_pos, dtype=torch.bool, device=device)
            return none, none.clone()
        (i1, v1), (i2, v2) = self._dense(other, n_pos), other._dense(self, n_pos)
        return (i1 != i2).any(0).to(device), (v1 != v2).any(0).to(device)

    def _dense(self, other: Numbering, n_pos: int) -> tuple[Tensor, Tensor]:
        """IDs and visibility as full [rows, n_pos] tensors (rows and device from whichever holds a tensor)."""
        like = next(t for t in (self.ids, self.visible, other.ids, other.visible) if t is not None)
        ids = self.ids_at(0, n_pos, like.device).expand(len(like), n_pos)
        ones = torch.ones(len(like), n_pos, dtype=torch.bool, device=like.device)
        return ids, ones if self.visible is None else self.visible[:, :n_pos]

    def take(self, rows: Int[Tensor, " n"]) -> Numbering:
        """The numbering of rows ``rows`` (stacked copies of this forward's rows)."""
        return Numbering(*(None if t is None else t[rows] for t in (self.ids, self.visible)))

    def repeat(self, n: int) -> Numbering:
        """``n`` copies of every row, copy-major (rows ``s*B .. s*B+B-1`` are copy ``s``)."""
        return Numbering(*(None if t is None else t.repeat(n, 1) for t in (self.ids, self.visible)))

    def ids_at(self, start: int, stop: int, device: torch.device) -> Int[Tensor, "rows_or_1 q"]:
        """The IDs of positions ``start..stop-1`` ([1, q] when they are the positions themselves)."""
        if self.ids is None:
            return torch.arange(start, stop, device=device).unsqueeze(0)
        return self.ids[:, start:stop]

    def visible_keys(self, stop: int) -> Bool[Tensor, "rows keys"] | None:
        """Visibility of keys ``0..stop-1``, or None when every key is visible."""
        return None if self.visible is None else self.visible[:, :stop]


class Rotary:
    """Rotary position embedding with the bridge's tables: rotates the first ``rotary_dim`` features
    of each head by the angles of each token's position ID (adjacent pairs rotate together)."""

    def __init__(self, cos: Float[Tensor, "n_ctx rd"], sin: Float[Tensor, "n_ctx rd"]) -> None:
        self.cos, self.sin, self.dim = cos, sin, cos.shape[-1]

    @classmethod
    def of(cls, model: torch.nn.Module) -> Rotary | None:
        """The rotary tables of a bridge built with ``boot_native`` (None when it has none)."""
        native = getattr(getattr(model, "original_model", None), "rotary", None)
        if native is None:
            return None
        return cls(native.cos_cached.detach().clone(), native.sin_cached.detach().clone())

    def __call__(
        self, x: Float[Tensor, "rows head q d_head"], ids: Int[Tensor, "rows_or_1 q"]
    ) -> Float[Tensor, "rows head q d_head"]:
        """``x`` rotated by the angles of position IDs ``ids`` (per row, or [1, q] for every row)."""
        cos, sin = self.cos[ids].unsqueeze(1).to(x.dtype), self.sin[ids].unsqueeze(1).to(x.dtype)
        rot, rest = x[..., : self.dim], x[..., self.dim :]
        half = torch.stack((-rot[..., 1::2], rot[..., 0::2]), dim=-1).flatten(-2)  # (x0, x1) -> (-x1, x0)
        out = rot * cos + half * sin
        return torch.cat([out, rest], dim=-1) if rest.shape[-1] else out


def softmax_(scores: Float[Tensor, "... keys"]) -> Float[Tensor, "... keys"]:
    """Softmax over the last dimension, in place when no gradient is needed.

    For the short key dimensions of these models (<= the context, ~15) torch's CPU softmax and
    per-row max kernels are several times slower than ``exp(x - m) / sum`` with one global
    maximum ``m`` (softmax is unchanged by any constant shift); rows whose sum would underflow
    (their maximum ~80 below ``m``) fall back to per-row maxima. With autograd on it is
    ``Tensor.softmax``. Rows must hold at least one finite score (see :func:`masked_pattern`).
    """
    if (scores.requires_grad and torch.is_grad_enabled()) or not scores.numel():
        return scores.softmax(-1)
    raw = scores.clone()
    scores.sub_(scores.max()).exp_()
    total = scores.sum(-1, keepdim=True)
    if bool(total.min() < 1e-30):
        scores = raw.sub_(raw.amax(-1, keepdim=True)).exp_()
        total = scores.sum(-1, keepdim=True)
    return scores.div_(total)


def future(n_q: int, n_k: int, device: torch.device, offset: int = 0) -> Bool[Tensor, "q k"]:
    """[n_q, n_k] True where key position > query position (query i sits at ``offset + i``)."""
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).triu(offset + 1)


def hidden_keys(
    n_q: int, visible: Bool[Tensor, "rows keys"] | None, n_k: int, device: torch.device, offset: int = 0
) -> Bool[Tensor, "rows_or_1 1 q keys"]:
    """Keys a query may not read: later positions, and keys ``visible`` hides (per row)."""
    hide = future(n_q, n_k, device, offset)[None, None]
    return hide if visible is None else hide | ~visible[:, None, None, :n_k]


def masked_pattern(
    scores: Float[Tensor, "rows head q keys"], hide: Bool[Tensor, "rows_or_1 1 q keys"], can_be_empty: bool
) -> Float[Tensor, "rows head q keys"]:
    """The attention pattern: softmax over the keys not hidden; a query whose keys are all hidden
    gets zeros (as the bridge's ``masked_fill(mask, 0)`` after its softmax). ``can_be_empty``: a
    row may hide every key (only with a visibility mask; causal masks keep the diagonal).
    In place when no gradient is needed."""
    grad = scores.requires_grad and torch.is_grad_enabled()
    empty = hide.all(-1, keepdim=True) if can_be_empty else None
    if empty is not None and not bool(empty.any()):
        empty = None
    if empty is not None:
        hide = hide & ~empty  # softmax over every key there (finite), zeroed below
    scores = scores.masked_fill(hide, float("-inf")) if grad else scores.masked_fill_(hide, float("-inf"))
    pattern = softmax_(scores)
    if empty is not None:
        pattern = pattern.masked_fill(empty, 0.0) if grad else pattern.masked_fill_(empty, 0.0)
    return pattern


def causal_attention(
    q: Float[Tensor, "rows head q d_head"],
    k: Float[Tensor, "rows head keys d_head"],
    v: Float[Tensor, "rows head keys d_head"],
    scale: float,
    visible: Bool[Tensor, "rows keys"] | None = None,
) -> Float[Tensor, "rows head q d_head"]:
    """Causal attention over the keys of positions ``0..k-1`` of queries at the last ``q`` of them
    (usually all), keys hidden where ``visible`` is False."""
    # written out: for heads this small it beats scaled_dot_product_attention on CPUs
    w = q @ k.transpose(-1, -2)
    w = w * scale if w.requires_grad and torch.is_grad_enabled() else w.mul_(scale)
    hide = hidden_keys(q.shape[2], visible, k.shape[2], q.device, offset=k.shape[2] - q.shape[2])
    return masked_pattern(w, hide, visible is not None) @ v


class SharedPrefix:
    """Keys/values ``[B, H, start, dh]`` per layer of positions ``< start`` from one run, for rows
    stacked from that run's batch: ``variants`` copies of the whole batch (variant-major; the
    prefix is shared, never copied), or, with ``rows``, stacked row i a copy of batch row ``rows[i]``."""

    def __init__(
        self,
        keys: dict[int, Tensor],
        values: dict[int, Tensor],
        variants: int = 1,
        rows: Int[Tensor, " stacked"] | None = None,
    ) -> None:
        self.keys, self.values, self.variants, self.rows = keys, values, variants, rows

    def attend(
        self,
        j: int,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        start: int,
        scale: float,
        visible: Bool[Tensor, "stacked keys"] | None = None,
    ) -> Tensor:
        """Causal attention over the prefix and the new keys of positions ``start..start+K-1``, of
        queries at the last ``Q`` of those positions (usually all K). q: [stacked rows, H, Q, dh],
        k, v: [stacked rows, H, K, dh] -> z [stacked rows, H, Q, dh]; ``visible`` [stacked rows,
        start + K] hides keys (None: every key visible)."""
        k_pre, v_pre = self.keys[j], self.values[j]
        if k_pre.shape[2] != start:
            raise ValueError(f"the shared prefix holds {k_pre.shape[2]} positions; the segment starts at {start}")
        N, H, Q, dh = q.shape
        K = k.shape[2]
        q = q * scale
        new = q @ k.transpose(-1, -2)
        if self.rows is not None:  # one prefix per stacked row
            k_pre, v_pre = k_pre[self.rows], v_pre[self.rows]
            pre = q @ k_pre.transpose(-1, -2)
        else:  # prefix scores as one [B*H] batched matmul over all S*Q queries
            S = self.variants
            B = N // S
            qb = q.view(S, B, H, Q, dh).permute(1, 2, 0, 3, 4).reshape(B, H, S * Q, dh)
            pre = (qb @ k_pre.transpose(-1, -2)).view(B, H, S, Q, start).permute(2, 0, 1, 3, 4).reshape(N, H, Q, start)
        hide = hidden_keys(Q, visible, start + K, q.device, offset=start + K - Q)
        w = masked_pattern(torch.cat([pre, new], dim=-1), hide, visible is not None)
        if self.rows is not None:
            return w[..., :start] @ v_pre + w[..., start:] @ v
        S = self.variants
        B = N // S
        wb = w[..., :start].reshape(S, B, H, Q, start).permute(1, 2, 0, 3, 4).reshape(B, H, S * Q, start)
        z_pre = (wb @ v_pre).view(B, H, S, Q, dh).permute(2, 0, 1, 3, 4).reshape(N, H, Q, dh)
        return z_pre + w[..., start:] @ v


class KVBuffer:
    """Per-row key/value buffers ``[B, H, T, dh]`` per layer; each call writes its new positions."""

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        length: int,
        d_head: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (batch, n_heads, length, d_head)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layers)]

    def attend(
        self,
        j: int,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        start: int,
        scale: float,
        visible: Bool[Tensor, "batch keys"] | None = None,
    ) -> Tensor:
        """Write k, v [B, H, Qk, dh] at positions ``start..``; the queries q [B, H, Qq, dh] are the
        last ``Qq`` of those positions and attend causally over the buffer (``visible`` [B, >= T]
        hides keys; None: every key visible)."""
        T, n_q = start + k.shape[2], q.shape[2]
        self.keys[j][:, :, start:T] = k
        self.values[j][:, :, start:T] = v
        keys, values = self.keys[j][:, :, :T], self.values[j][:, :, :T]
        # written out: for heads this small, CPU kernels beat scaled_dot_product_attention
        if n_q == 1 and visible is None:
            w = (q * keys).sum(-1).mul_(scale)  # [B, H, T]
            return (softmax_(w).unsqueeze(-1) * values).sum(-2, keepdim=True)
        w = (q @ keys.transpose(-1, -2)).mul_(scale)
        hide = hidden_keys(n_q, visible, T, q.device, offset=T - n_q)
        return masked_pattern(w, hide, visible is not None) @ values
