"""MIB's circuit metrics (cpr, cmd) on curves computed by hand, the edge cuts and the random baseline."""

from __future__ import annotations

import pytest
import torch

from mechinterp_arith.analysis.circuit_metrics import FRACTIONS, cmd, cpr, fraction_sizes, random_scores, top_edges
from mechinterp_arith.analysis.edge_graph import EdgeGraph


def test_metrics_on_a_planted_curve_by_hand():
    # trapezoids over (0.001, 0.5, 1): widths 0.499 and 0.5
    x, f = [0.001, 0.5, 1.0], [0.2, 0.8, 1.2]
    assert cpr(x, f) == pytest.approx(0.499 * 0.5 + 0.5 * 1.0)  # 0.7495
    # |1 - f| = 0.8, 0.2, 0.2 (faithfulness above 1 counts as distance: MIB takes abs, no clipping)
    assert cmd(x, f) == pytest.approx(0.499 * 0.5 + 0.5 * 0.2)  # 0.3495
    with pytest.raises(ValueError, match="as many"):
        cpr(x, f[:2])


def test_full_and_empty_graph():
    ones, zeros = [1.0] * len(FRACTIONS), [0.0] * len(FRACTIONS)
    assert cpr(FRACTIONS, ones) == pytest.approx(0.999) and cmd(FRACTIONS, ones) == 0
    assert cpr(FRACTIONS, zeros) == 0 and cmd(FRACTIONS, zeros) == pytest.approx(0.999)
    # MIB's fractions and its int() edge counts: TL's graph of a 1-layer, 4-head model over 21 positions
    graph = EdgeGraph(n_layers=1, n_heads=4, n_pos=21)
    assert FRACTIONS == (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    assert graph.n_edges == 21 * 23 and fraction_sizes(graph) == [0, 0, 2, 4, 9, 24, 48, 96, 241, 483]


def test_top_edges_and_the_seeded_random_baseline():
    graph = EdgeGraph(n_layers=2, n_heads=2, n_pos=3)
    a, b = random_scores(graph, seed=7), random_scores(graph, seed=7)
    assert torch.equal(a, b) and not torch.equal(a, random_scores(graph, seed=8))
    assert bool((a[:, ~graph.feeds] == 0).all()) and bool((a[:, graph.feeds] > 0).all())
    scores = -a  # sign does not matter: ranked by |score|
    for m in (0, 1, 5, graph.n_edges):
        mask = top_edges(graph, scores, m)
        assert int(mask.sum()) == m
        kept, dropped = a[mask], a[graph.feeds.expand(3, -1, -1) & ~mask]
        if 0 < m < graph.n_edges:
            assert kept.min() > dropped.max()
