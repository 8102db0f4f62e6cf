"""Circuits compared by role: positions relative to the predicted digit, overlaps by hand."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import Node

from mechinterp_arith.analysis.circuit_comparison import compare_circuits, overlap, role, role_edges, seed_similarity
from mechinterp_arith.analysis.discovery import Circuit
from mechinterp_arith.analysis.edge_graph import EdgeGraph
from mechinterp_arith.core.positions import operand_pos
from mechinterp_arith.core.tasks import Task

TASK = Task("add", 3, format="reversed", width=6)


def _circuit(digit: int, edges: list[tuple[str, int, int, float]], m: int) -> Circuit:
    """A circuit of head->logits-style edges: (operand, place, head, score): head h's value input
    reads the embedding at the operand digit's position."""
    graph = EdgeGraph(n_layers=1, n_heads=4, n_pos=TASK.n_ctx)
    scored = []
    for op, place, head, score in edges:
        pos = operand_pos(TASK, op, place)
        scored.append((Node("embed", pos), Node("v_input", pos, 0, head), score))
    mask = graph.mask_of(scored)
    scores = torch.zeros(mask.shape)
    for w, r, s in scored:
        scores[w.position, graph.reader_index(r), graph.writer_index(w)] = s
    metrics = {"cpr": 0.9, "cmd": 0.1, "random": {"cpr": 0.4, "cmd": 0.6}}
    return Circuit(digit, graph, mask, scores, 0.95, (0.9, 1.0), 1.0, (0.9, 1.0), 8, 0.1, {}, m, metrics)


def test_roles_are_relative_to_the_predicted_digit():
    assert [role(x, 4) for x in ("a4", "b3", "ans3", "=", "+")] == ["a+0", "b-1", "ans-1", "ans-5", "+"]
    assert role("=", 0) == role("ans3", 4) == "ans-1"  # both predict the digit


def test_overlap_by_hand():
    a = {("a+0", "embed", "L0H1.v"): 0.75, ("b+0", "embed", "L0H2.v"): 0.25}
    b = {("a+0", "embed", "L0H1.v"): 0.5, ("b-1", "embed", "L0H3.v"): 0.5}
    got = overlap(a, b)
    assert got["jaccard"] == pytest.approx(1 / 3) and got["containment"] == pytest.approx(1 / 2)
    assert got["weighted"] == pytest.approx(0.5 / (0.75 + 0.25 + 0.5))


def test_reuse_of_the_id_circuit_at_a_longer_length():
    id2 = _circuit(2, [("a", 2, 1, 3.0), ("b", 2, 2, 1.0)], m=3)
    ood4 = _circuit(4, [("a", 4, 1, 1.0), ("b", 4, 2, 1.0), ("b", 3, 0, 2.0)], m=6)
    roles = role_edges(ood4, TASK)
    assert roles[("b-1", "embed", "L0H0.v")] == pytest.approx(0.5)
    table = compare_circuits({("coupling", 0, 3, 2): id2, ("coupling", 0, 6, 4): ood4}, TASK)
    row = table[table.digit == 4].iloc[0]
    assert row.reuse_jaccard == pytest.approx(2 / 3) and row.reuse_containment == pytest.approx(2 / 3)
    # weights: id2 0.75 / 0.25; ood4 0.25 / 0.25 / 0.5 -> min 0.25 + 0.25, max 0.75 + 0.25 + 0.5
    assert row.reuse_weighted == pytest.approx(0.5 / 1.5) and row.best_id_digit == 2 and row.analogue_digit == 2
    assert row.score_total == pytest.approx(4.0)
    assert row.operand_readers == "L0H1.v@a+0, L0H2.v@b+0"
    assert pd_isnan(table[table.digit == 2].iloc[0].get("reuse_weighted"))


def pd_isnan(x) -> bool:
    return x is None or x != x


def test_seed_similarity_drops_head_numbers():
    s0 = _circuit(1, [("a", 1, 0, 1.0)], m=3)
    s1 = _circuit(1, [("a", 1, 3, 1.0)], m=3)  # the same role, another head number
    sim = seed_similarity({("learned", 0, 3, 1): s0, ("learned", 1, 3, 1): s1}, TASK, "learned", 3, 1)
    assert sim.values.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    exact = seed_similarity({("learned", 0, 3, 1): s0, ("learned", 1, 3, 1): s1}, TASK, "learned", 3, 1, False)
    assert exact.values.tolist() == [[1.0, 0.0], [0.0, 1.0]]
