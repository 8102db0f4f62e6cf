"""Sub-task families and node necessity on add3 against what is known of its circuit
(docs/findings.md), and the interchange interventions of the study's claim."""

import numpy as np
import pytest
from transformer_lens.tools.analysis.attribution_patching import Node

from mechinterp_arith import Task
from mechinterp_arith.analysis.interchange import extra_digit_interchange, units_digit_das
from mechinterp_arith.analysis.subtasks import SUBTASKS, node_necessity, subtask_pairs, subtask_tags
from mechinterp_arith.core.errors import NotApplicable

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _digits(x, place):
    return (x // 10**place) % 10


def test_families_isolate_their_subtask():
    task = Task("add", 3)
    base = subtask_pairs(task, "BaseAdd", 1, n=32, operand="a")
    assert (_digits(base.clean_a, 1) != _digits(base.corrupted_a, 1)).all() and np.array_equal(
        base.clean_b, base.corrupted_b
    )
    assert ((base.clean_a % 10 + base.clean_b % 10) < 10).all()  # no carry into digit 1
    use = subtask_pairs(task, "UseCarry1", 1, n=32)
    assert ((use.clean_a % 10 + use.clean_b % 10) >= 10).all() and (
        (use.corrupted_a % 10 + use.corrupted_b % 10) >= 10
    ).all()
    make = subtask_pairs(task, "MakeCarry1", 3, n=32)
    s2 = lambda a, b: _digits(a, 2) + _digits(b, 2)
    assert (s2(make.clean_a, make.clean_b) >= 10).all() and (s2(make.corrupted_a, make.corrupted_b) <= 8).all()
    cascade = subtask_pairs(task, "UseSum9", 3, n=32)
    assert (s2(cascade.clean_a, cascade.clean_b) == 9).all() and (
        s2(cascade.corrupted_a, cascade.corrupted_b) == 9
    ).all()
    for pairs, k in ((base, 1), (use, 1), (make, 3), (cascade, 3)):
        assert (pairs.clean_digits[:, k] != pairs.corrupted_digits[:, k]).all()
    with pytest.raises(NotApplicable, match="BaseAdd is defined for answer digits 0..2"):
        subtask_pairs(task, "BaseAdd", 3)
    with pytest.raises(NotApplicable, match="defined for addition"):
        subtask_pairs(Task("mul", 3), "BaseAdd", 1)


def test_necessity_matches_the_known_add3_circuit(add3):
    heads = lambda layer, pos, hs=(0, 1, 2): tuple(Node("attn_head_out", pos, layer, h) for h in hs)
    nodes = [heads(0, 8, (1, 2)), heads(2, 10, (1,)), heads(2, 10, (2,))]  # digit 1: b1 sits at 8, predicted at 10
    by_a = node_necessity(add3, 1, nodes, n=32, subtasks=("BaseAdd",), operand="a").set_index("node").necessity
    by_b = node_necessity(add3, 1, nodes, n=32, subtasks=("BaseAdd",), operand="b").set_index("node").necessity
    # L0H1/L0H2 move a_1 into b_1's position: needed when a_1 changes, not when b_1 does
    assert by_a["L0H1@8+L0H2@8"] > 0.8 and by_b["L0H1@8+L0H2@8"] < 0.15
    # L2H1 and L2H2 read the digit from b_1's position either way
    assert min(by_a["L2H1@10"], by_a["L2H2@10"], by_b["L2H1@10"], by_b["L2H2@10"]) > 0.3
    # the carry into the thousands digit comes from layer-0 attention at ans2 (position 12)
    carry = node_necessity(add3, 3, [heads(0, 12), heads(1, 12), heads(2, 12)], n=32, subtasks=("MakeCarry1",))
    assert carry.necessity.iloc[0] > 0.4 and carry.necessity.iloc[1:].abs().max() < 0.1


def test_tags_of_a_discovered_circuit(add3):
    from mechinterp_arith.analysis.discovery import discover

    circuit = discover(add3, 3, n=32, n_heldout=32)
    tags = subtask_tags(add3, circuit, n=32)
    assert set(tags.attrs["skipped"]) == {"BaseAdd", "UseCarry1"} and {"MakeCarry1", "UseSum9"} <= set(tags.columns)
    row = tags.set_index("node")
    assert "MakeCarry1" in row.loc["L0H2@12", "tags"] and row.loc["MLP0@12", "MakeCarry1"] > 0.8
    assert set(SUBTASKS) >= {t for ts in tags.tags for t in ts}


def test_extra_digits_are_interchangeable_and_ignored(add3):
    df = extra_digit_interchange(add3, n=48)
    assert df.attrs["positions"] == [1, 6]  # a3 and b3
    assert (
        (df.iia_unchanged >= 0.85).all()
        and (df.iia_true_arithmetic <= 0.02).all()
        and df.attrs["baseline_truncation"] > 0.85
    )


def test_units_digit_das_beats_its_controls(add3):
    r = units_digit_das(add3, rank=8, n=256, n_test=128, epochs=6)
    assert r.iia > 0.8 and r.iia_random_basis < 0.3 and r.iia_arbitrary_labels < 0.4
    assert len(r.pca_cosines) == 8 and r.cluster_share_das > 0.5
