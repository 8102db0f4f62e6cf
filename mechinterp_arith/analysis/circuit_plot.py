"""The circuit graph: a discovered circuit's nodes by layer and position, edges weighted by score,
nodes coloured by the sub-tasks they are necessary for (:func:`main_tag`; plotly, works offline).

Rows bottom to top: token embeddings, then per layer its heads and its MLP, then the logits; columns:
token positions. An edge into a head's query (solid) or key/value input (dashed) ends at that
head at the edge's position; a dotted line then carries a key/value read to the same head at a
later position of the circuit (attention moves information across positions).

>>> fig = circuit_figure(circuit, tags=subtask_tags(ckpt, circuit), labels=position_labels(ckpt.task))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from transformer_lens.tools.analysis.attribution_patching import Node

from .discovery import Circuit
from .edge_graph import node_label

COLOURS = {
    "BaseAdd": "#1f77b4",
    "UseCarry1": "#2ca02c",
    "MakeCarry1": "#d62728",
    "UseSum9": "#9467bd",
    "sum and carry": "#ff7f0e",
    None: "#9e9e9e",
}
SUM, CARRY = ("BaseAdd", "UseCarry1"), ("MakeCarry1", "UseSum9")
HEAD_SPREAD = 0.28  # horizontal offset between the heads of one layer at one position


def _xy(node: Node, n_heads: int, n_layers: int) -> tuple[float, float]:
    if node.kind == "embed":
        return node.position, 0.0
    if node.kind == "logits":
        return node.position, 2.0 * n_layers + 1
    layer = node.layer if node.layer is not None else 0  # set on every node but embed and logits
    if node.kind in ("mlp_out", "mlp_in"):
        return node.position, 2.0 * layer + 2
    head = node.head if node.head is not None else 0  # set on head nodes
    return node.position + (head - (n_heads - 1) / 2) * HEAD_SPREAD, 2.0 * layer + 1


def main_tag(tags: list[str]) -> str | None:
    """The colour of a node necessary for ``tags``: the digit-sum families (BaseAdd, UseCarry1:
    UseCarry1 pairs change a_k or b_k too, so a base-add node is needed for both; UseCarry1 alone
    marks a node specific to adding the carry), the carry families (MakeCarry1, UseSum9), or
    "sum and carry" for a node needed by both kinds."""
    sums, carries = [t for t in tags if t in SUM], [t for t in tags if t in CARRY]
    if sums and carries:
        return "sum and carry"
    if sums:
        return "BaseAdd" if "BaseAdd" in sums else "UseCarry1"
    return carries[0] if carries else None


def _component(reader: Node) -> Node:
    """The node whose output a reader feeds: a head for q/k/v inputs, the MLP for its input."""
    if reader.kind in ("q_input", "k_input", "v_input"):
        return Node("attn_head_out", reader.position, reader.layer, reader.head)
    if reader.kind == "mlp_in":
        return Node("mlp_out", reader.position, reader.layer)
    return reader


def circuit_figure(
    circuit: Circuit, tags: pd.DataFrame | None = None, labels: list[str] | None = None, title: str | None = None
) -> go.Figure:
    """Plotly figure of a :class:`~mechinterp_arith.analysis.discovery.Circuit` (see module doc);
    ``tags`` from :func:`~mechinterp_arith.analysis.subtasks.subtask_tags` colour the nodes."""
    graph = circuit.graph
    H, L = graph.n_heads, graph.n_layers
    edges = circuit.edges()
    top = max((abs(s) for _, _, s in edges), default=1.0) or 1.0
    tag_of = {} if tags is None else dict(zip(tags["node"], (main_tag(list(t)) for t in tags["tags"])))
    fig = go.Figure()
    nodes: dict[Node, None] = {}
    for kind, dash in (("q", "solid"), ("kv", "dash"), ("other", "solid")):
        for w, r, s in edges:
            group = "q" if r.kind == "q_input" else "kv" if r.kind in ("k_input", "v_input") else "other"
            if group != kind:
                continue
            target = _component(r)
            nodes.setdefault(w)
            nodes.setdefault(target)
            (x0, y0), (x1, y1) = _xy(w, H, L), _xy(target, H, L)
            fig.add_trace(
                go.Scatter(
                    x=[x0, x1],
                    y=[y0, y1],
                    mode="lines",
                    showlegend=False,
                    hoverinfo="text",
                    text=f"{node_label(w)} -> {node_label(r)}: {s:+.3f}",
                    line={
                        "width": 0.8 + 5 * abs(s) / top,
                        "dash": dash,
                        "color": "rgba(60,60,60,0.55)" if s >= 0 else "rgba(214,39,40,0.55)",
                    },
                )
            )
    heads_at: dict[tuple[int | None, int | None], list[int]] = {}
    for nd in nodes:
        if nd.kind == "attn_head_out":
            heads_at.setdefault((nd.layer, nd.head), []).append(nd.position)
    for _, r, _ in edges:  # key/value reads carried to later positions of the same head
        if r.kind in ("k_input", "v_input"):
            for q in heads_at.get((r.layer, r.head), []):
                if q > r.position:
                    (x0, y0), (x1, y1) = _xy(_component(r), H, L), _xy(Node("attn_head_out", q, r.layer, r.head), H, L)
                    fig.add_trace(
                        go.Scatter(
                            x=[x0, x1],
                            y=[y0, y1],
                            mode="lines",
                            showlegend=False,
                            hoverinfo="skip",
                            line={"width": 1, "dash": "dot", "color": "rgba(120,120,120,0.6)"},
                        )
                    )
    for tag, colour in COLOURS.items():
        members = [nd for nd in nodes if tag_of.get(node_label(nd)) == tag]
        if not members:
            continue
        xy = [_xy(nd, H, L) for nd in members]
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in xy],
                y=[p[1] for p in xy],
                mode="markers+text",
                name=tag or "no tag",
                text=[node_label(nd).split("@")[0] for nd in members],
                textposition="top center",
                textfont={"size": 9},
                marker={"size": 13, "color": colour, "line": {"width": 1, "color": "white"}},
                hovertext=[node_label(nd) for nd in members],
                hoverinfo="text",
            )
        )
    rows = ["embed"] + [x for l in range(L) for x in (f"L{l} heads", f"MLP{l}")] + ["logits"]
    positions = sorted({nd.position for nd in nodes})
    fig.update_layout(
        title=title
        or f"answer digit {circuit.digit}: {circuit.n_edges} of {circuit.n_edges_total} edges, "
        f"faithfulness {circuit.faithfulness:.3f}",
        xaxis={
            "tickvals": positions,
            "ticktext": [f"{p}:{labels[p]}" if labels else str(p) for p in positions],
            "title": "position",
        },
        yaxis={"tickvals": list(range(len(rows))), "ticktext": rows, "range": [-0.6, len(rows) - 0.4]},
        height=140 + 55 * len(rows),
        margin={"t": 50, "b": 40},
        legend_title="necessary for",
        plot_bgcolor="white",
    )
    return fig


def circuits_side_by_side(
    panels: Mapping[str, Circuit], labels: list[str] | None = None, cols: int = 2, title: str | None = None
) -> go.Figure:
    """Several circuits in a grid of :func:`circuit_figure` panels (``cols`` per row), each titled
    by its key, e.g. ``{"learned, 3 digits, digit 2": c1, "coupled, 6 digits, digit 4": c2, ...}``:
    the side-by-side view of ID vs OOD length, one scheme against another."""
    from plotly.subplots import make_subplots

    names = list(panels)
    rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.06, vertical_spacing=0.12)
    seen: set[str] = set()
    n_rows = 0
    for i, name in enumerate(names):
        single = circuit_figure(panels[name], labels=labels)
        row, col = i // cols + 1, i % cols + 1
        for trace in single.data:
            if trace.showlegend is not False:
                trace.showlegend = trace.name not in seen
                seen.add(trace.name)
            fig.add_trace(trace, row=row, col=col)
        fig.update_xaxes(tickvals=single.layout.xaxis.tickvals, ticktext=single.layout.xaxis.ticktext, row=row, col=col)
        fig.update_yaxes(
            tickvals=single.layout.yaxis.tickvals,
            ticktext=single.layout.yaxis.ticktext,
            range=single.layout.yaxis.range,
            row=row,
            col=col,
        )
        n_rows = max(n_rows, len(single.layout.yaxis.tickvals))
    fig.update_layout(title=title, height=rows * (100 + 55 * n_rows), plot_bgcolor="white", margin={"t": 70, "b": 40})
    return fig
