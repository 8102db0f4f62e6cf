"""The residual-stream edge graph of TransformerLens's attribution patching, as index tables.

TL (``transformer_lens.tools.analysis.attribution_patching.enumerate_edges``) connects, at every
position, each *writer* (the token embedding, every head's output, every MLP's output) to each
*reader* after it (every head's query/key/value input, every MLP's input, the logits). Edges never
cross positions: attention moves information when a head at position q reads the key/value inputs
of earlier positions. Here the same graph, in the same order, is three small tables so that many
circuits can be evaluated at once: writer ``w`` and reader ``r`` are local indices (the same at
every position) and an edge is ``(position, r, w)``; a circuit is a boolean mask ``[pos, R, W]``.
Its edges convert to TL's :class:`Node` pairs, so a TL user can feed them back to TL.

>>> graph = EdgeGraph(n_layers=3, n_heads=3, n_pos=15)
>>> graph.n_writers, graph.n_readers, graph.n_edges              # 13, 31, 15 * 172 (TL's count)
(13, 31, 2580)
>>> graph.writer_node(5, position=9)                             # L1H0 at b0's position
Node(kind='attn_head_out', position=9, layer=1, head=0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor
from transformer_lens.tools.analysis.attribution_patching import Node, NodeKind

QKV: tuple[NodeKind, ...] = ("q_input", "k_input", "v_input")


@dataclass(frozen=True)
class EdgeGraph:
    """TL's edge graph of an ``n_layers`` x ``n_heads`` model over ``n_pos`` positions.

    Writers (per position): 0 = embed, then per layer ``l`` its heads ``1 + l*(H+1) + h`` and its
    MLP ``1 + l*(H+1) + H``. Readers: per layer ``l`` the q inputs of its heads, then k, then v
    (``l*(3H+1) + kind*H + h``), then its MLP input ``l*(3H+1) + 3H``; the last reader is the logits.
    """

    n_layers: int
    n_heads: int
    n_pos: int
    feeds: Bool[Tensor, "reader writer"] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        L, H = self.n_layers, self.n_heads
        feeds = torch.zeros(self.n_readers, self.n_writers, dtype=torch.bool)
        for l in range(L):
            first_head = 1 + l * (H + 1)
            feeds[self.attn_readers(l), :first_head] = True
            feeds[self.mlp_reader(l), : first_head + H] = True
        feeds[-1] = True
        object.__setattr__(self, "feeds", feeds)

    # ---- sizes and indices -------------------------------------------------------------------------
    @property
    def n_writers(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_readers(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @property
    def n_edges(self) -> int:
        """Edges of the whole graph (every position), as ``enumerate_edges`` counts them."""
        return self.n_pos * int(self.feeds.sum())

    def head_writer(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_writer(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def attn_readers(self, layer: int) -> slice:
        """The 3H q/k/v readers of layer ``layer`` (q of every head, then k, then v)."""
        start = layer * (3 * self.n_heads + 1)
        return slice(start, start + 3 * self.n_heads)

    def mlp_reader(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_reader(self) -> int:
        return self.n_readers - 1

    # ---- TL nodes ----------------------------------------------------------------------------------
    def writer_node(self, w: int, position: int) -> Node:
        """Writer ``w`` at ``position`` as TL's :class:`Node`."""
        if w == 0:
            return Node(kind="embed", position=position)
        layer, h = divmod(w - 1, self.n_heads + 1)
        if h == self.n_heads:
            return Node(kind="mlp_out", position=position, layer=layer)
        return Node(kind="attn_head_out", position=position, layer=layer, head=h)

    def reader_node(self, r: int, position: int) -> Node:
        """Reader ``r`` at ``position`` as TL's :class:`Node`."""
        if r == self.logits_reader:
            return Node(kind="logits", position=position, layer=self.n_layers - 1)
        layer, i = divmod(r, 3 * self.n_heads + 1)
        if i == 3 * self.n_heads:
            return Node(kind="mlp_in", position=position, layer=layer)
        kind, head = divmod(i, self.n_heads)
        return Node(kind=QKV[kind], position=position, layer=layer, head=head)

    def writer_index(self, node: Node) -> int:
        if node.kind == "embed":
            return 0
        if node.kind == "attn_head_out":
            return self.head_writer(_layer(node), _head(node))
        if node.kind == "mlp_out":
            return self.mlp_writer(_layer(node))
        raise ValueError(f"{node.kind} nodes are readers, not writers")

    def reader_index(self, node: Node) -> int:
        if node.kind == "logits":
            return self.logits_reader
        if node.kind == "mlp_in":
            return self.mlp_reader(_layer(node))
        if node.kind in QKV:
            return self.attn_readers(_layer(node)).start + QKV.index(node.kind) * self.n_heads + _head(node)
        raise ValueError(f"{node.kind} nodes are writers, not readers")

    def edges(self, mask: Bool[Tensor, "pos reader writer"] | None = None) -> list[tuple[Node, Node]]:
        """The edges of ``mask`` (default: the whole graph) as (writer, reader) Node pairs, in the
        order of TL's ``enumerate_edges``."""
        mask = self.feeds.expand(self.n_pos, -1, -1) if mask is None else mask & self.feeds
        return [(self.writer_node(int(w), int(p)), self.reader_node(int(r), int(p))) for p, r, w in self.order(mask)]

    def order(self, mask: Bool[Tensor, "pos reader writer"]) -> Tensor:
        """The (position, reader, writer) rows of ``mask``'s edges in TL's order: by position, then
        layer by layer (q/k/v readers, the MLP reader), the logits last, writers in order."""
        return torch.nonzero(mask & self.feeds)  # row-major over (pos, reader, writer) is TL's order

    def mask_of(self, edges: Iterable[Sequence[Any]]) -> Bool[Tensor, "pos reader writer"]:
        """The mask of (writer, reader) Node pairs (extra elements of each tuple, e.g. scores, ignored)."""
        mask = torch.zeros(self.n_pos, self.n_readers, self.n_writers, dtype=torch.bool)
        for edge in edges:
            writer, reader = edge[0], edge[1]
            if writer.position != reader.position:
                raise ValueError(f"edge {writer} -> {reader} crosses positions; TL's edges never do")
            w, r = self.writer_index(writer), self.reader_index(reader)
            if not self.feeds[r, w] or not 0 <= writer.position < self.n_pos:
                raise ValueError(f"edge {writer} -> {reader} is not in the graph")
            mask[writer.position, r, w] = True
        return mask

    # ---- circuits ----------------------------------------------------------------------------------
    def prune_dangling(
        self,
        mask: Bool[Tensor, "pos reader writer"],
        sources: Bool[Tensor, " pos"],
        sinks: Bool[Tensor, " pos"],
        rewired: Bool[Tensor, " pos"] | None = None,
    ) -> Bool[Tensor, "pos reader writer"]:
        """``mask`` without the edges that cannot matter: those from a writer that no kept path
        reaches from an embedding at a ``sources`` position (its output is then the corrupted
        one), or into a reader whose component reaches no logits at a ``sinks`` position through
        kept edges. Heads at ``rewired`` positions (their queries see keys that the clean and
        corrupted inputs hide differently) count as reached. Removing the edges leaves every
        ablated run unchanged, exactly."""
        mask = mask & self.feeds
        while True:
            active = self._active_writers(mask, sources, rewired)
            useful = self._useful_readers(mask, sinks)
            pruned = mask & active[:, None, :] & useful[:, :, None]
            if torch.equal(pruned, mask):
                return mask
            mask = pruned

    def _active_writers(self, mask: Tensor, sources: Tensor, rewired: Tensor | None = None) -> Tensor:
        """[pos, W]: writers whose output can differ from the corrupted run's."""
        H = self.n_heads
        active = torch.zeros(self.n_pos, self.n_writers, dtype=torch.bool)
        active[:, 0] = sources
        for l in range(self.n_layers):
            fed = (
                (mask[:, self.attn_readers(l)] & active[:, None, :]).any(-1).view(self.n_pos, 3, H)
            )  # [pos, qkv, head]
            kv_seen = (fed[:, 1] | fed[:, 2]).cummax(0).values  # keys/values at or before the query
            heads = slice(self.head_writer(l, 0), self.head_writer(l, 0) + H)
            active[:, heads] = fed[:, 0] | kv_seen
            if rewired is not None:
                active[:, heads] |= rewired[:, None]
            active[:, self.mlp_writer(l)] = (mask[:, self.mlp_reader(l)] & active).any(-1)
        return active

    def _useful_readers(self, mask: Tensor, sinks: Tensor) -> Tensor:
        """[pos, R]: readers whose component's output reaches the logits at a sink position."""
        H = self.n_heads
        useful = torch.zeros(self.n_pos, self.n_readers, dtype=torch.bool)
        useful[:, self.logits_reader] = sinks
        for l in reversed(range(self.n_layers)):

            def writer_useful(w: int) -> Tensor:
                return (mask[:, :, w] & useful).any(-1)

            useful[:, self.mlp_reader(l)] = writer_useful(self.mlp_writer(l))
            heads = torch.stack([writer_useful(self.head_writer(l, h)) for h in range(H)], dim=1)  # [pos, head]
            later = heads.flip(0).cummax(0).values.flip(0)  # a query at or after this key/value position
            r = self.attn_readers(l).start
            useful[:, r : r + H] = heads
            useful[:, r + H : r + 2 * H] = later
            useful[:, r + 2 * H : r + 3 * H] = later
        return useful


def node_label(node: Node) -> str:
    """Short name of a TL node: ``L0H2@8`` (a head's output), ``L2H1.v@8`` (its value input),
    ``MLP1@9`` / ``MLP1.in@9``, ``embed@4``, ``logits@10``."""
    at = f"@{node.position}"
    if node.kind == "attn_head_out":
        return f"L{node.layer}H{node.head}{at}"
    if node.kind in QKV:
        return f"L{node.layer}H{node.head}.{node.kind[0]}{at}"
    if node.kind == "mlp_out":
        return f"MLP{node.layer}{at}"
    if node.kind == "mlp_in":
        return f"MLP{node.layer}.in{at}"
    return f"{node.kind}{at}"


def _layer(node: Node) -> int:
    if node.layer is None:
        raise ValueError(f"a {node.kind} node has no layer")
    return node.layer


def _head(node: Node) -> int:
    if node.head is None:
        raise ValueError(f"a {node.kind} node has no head")
    return node.head
