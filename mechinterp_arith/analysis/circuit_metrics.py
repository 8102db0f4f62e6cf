"""The circuit metrics of the Mechanistic Interpretability Benchmark (MIB; Mueller et al. 2025).

Matched to its code (hannamw/MIB-circuit-track, ``MIB_circuit_track/evaluation.py``,
``evaluate_area_under_curve``): an edge ranking is cut at the top ``int(f * n_edges)`` edges for
each fraction ``f`` of :data:`FRACTIONS` (0.1% ... 100%), each cut is pruned (here
:meth:`EdgeGraph.prune_dangling`, MIB's ``prune=True``) and ablated, and its faithfulness
``(ablated - corrupted) / (clean - corrupted)`` of the mean metric is taken **unclipped**. Then, by
the trapezoidal rule on the linear fraction axis (MIB's default ``log_scale=False``):

- ``cpr`` (circuit performance ratio, MIB's ``area_under``): the area under the faithfulness curve,
  higher is better; the full graph everywhere gives 0.999 (the axis runs from 0.001 to 1);
- ``cmd`` (circuit-model distance, MIB's ``area_from_1``): the area of ``|1 - faithfulness|``,
  lower is better; the full graph gives 0, the empty graph 0.999.

MIB reads ``cpr`` from a signed ranking and ``cmd`` from an absolute one when both exist; our
rankings are by ``|score|`` for both. The random baseline ranks the same edges by seeded random
scores (MIB's "Random" method), so its circuits have the same sizes before pruning.

>>> cpr([0.001, 0.5, 1.0], [0.0, 1.0, 1.0]), cmd([0.001, 0.5, 1.0], [0.0, 1.0, 1.0])
(0.7495, 0.2495)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..core.seeding import generator
from .edge_graph import EdgeGraph

FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # MIB's percentages


def _trapezoid(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"a curve needs as many faithfulness values as fractions (>= 2), got {len(x)} and {len(y)}")
    return float(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))


def cpr(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """MIB's ``cpr``: the trapezoidal area under ``faithfulness`` over ``fractions`` (unclipped)."""
    return _trapezoid(fractions, faithfulness)


def cmd(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """MIB's ``cmd``: the trapezoidal area of ``|1 - faithfulness|`` over ``fractions``."""
    return _trapezoid(fractions, [abs(1.0 - f) for f in faithfulness])


def top_edges(
    graph: EdgeGraph, scores: Float[Tensor, "pos reader writer"], n_edges: int
) -> Bool[Tensor, "pos reader writer"]:
    """The ``n_edges`` edges of ``graph`` with the largest ``|scores|`` (ties in TL's edge order)."""
    flat = scores.abs().masked_fill(~graph.feeds.expand(graph.n_pos, -1, -1), -1.0).flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:n_edges]] = True
    return mask.view_as(scores) & graph.feeds


def fraction_sizes(graph: EdgeGraph, fractions: Sequence[float] = FRACTIONS) -> list[int]:
    """Edges kept at each fraction, as MIB counts them: ``int(f * n_edges)``."""
    return [int(f * graph.n_edges) for f in fractions]


def random_scores(graph: EdgeGraph, seed: int) -> Float[Tensor, "pos reader writer"]:
    """Seeded uniform random scores on ``graph``'s edges (zero off the graph): the random baseline."""
    gen = generator(seed, "random-circuit")
    return torch.rand(graph.n_pos, graph.n_readers, graph.n_writers, generator=gen) * graph.feeds
