"""Token positions and their names, and the labels of operand pairs: no model."""

import pytest
import torch

from mechinterp_arith import Task
from mechinterp_arith.core.labels import label_values, parse_label
from mechinterp_arith.core.positions import answer_logit_pos as predicting_position
from mechinterp_arith.core.positions import position_labels, resolve_position


def test_positions_and_roles():
    paper, plain = Task("add", 3), Task("add", 3, format="plain")
    assert [predicting_position(paper, k) for k in (0, 1, 5)] == [9, 10, 14]
    # plain: a(5) + b(5) = c(6, most significant first); the units digit is the last answer token
    assert predicting_position(plain, 5) == 11 and predicting_position(plain, 0) == 16
    assert position_labels(paper)[1] == "a3" and position_labels(paper)[6] == "b3" and len(position_labels(paper)) == 15
    assert position_labels(plain)[5] == "+" and position_labels(plain)[11] == "="
    assert (
        resolve_position(paper, "ans3") == 12
        and resolve_position(paper, -1) == 14
        and resolve_position(paper, None) == 9
    )


@pytest.mark.parametrize(
    "position, message",
    [
        (15, "position 15 is outside the model's input of 15 tokens"),
        ("ans6", "answer digit 6 is out of range"),
        ("tens", "unknown position 'tens'"),
    ],
)
def test_bad_positions(position, message):
    with pytest.raises(ValueError, match=message):
        resolve_position(Task("add", 3), position)


def test_label_values():
    add, mul, sub = Task("add", 3), Task("mul", 2), Task("sub", 3)
    a, b = torch.tensor([349, 999, 5]), torch.tensor([705, 1, 7])
    assert label_values(add, a, b, "units").tolist() == [4, 0, 2]
    assert label_values(add, a, b, "carry1").tolist() == [1, 1, 1]
    assert label_values(add, a, b, "carry3").tolist() == [1, 1, 0]
    assert label_values(add, a, b, "mod3").tolist() == [54, 0, 12]
    assert label_values(add, a, b, "a2").tolist() == [3, 9, 0] and label_values(add, a, b, "b0").tolist() == [5, 1, 7]
    # mul carries: digit k of a*b = (sum_{s+t=k} a_s b_t + carry_k) mod 10, checked against the product
    x, y = torch.arange(100).repeat_interleave(100), torch.arange(100).repeat(100)
    for k in (1, 2):
        conv = sum((x // 10**s % 10) * (y // 10 ** (k - s) % 10) for s in range(k + 1))
        assert torch.equal((conv + label_values(mul, x, y, f"carry{k}")) % 10, label_values(mul, x, y, f"ans{k}"))
    assert label_values(sub, torch.tensor([705, 41, 40]), torch.tensor([349, 1, 1]), "carry1").tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("digit0", "unknown label 'digit0'"),
        ("carry0", "carry<i> needs 1 <= i <= 5"),
        ("ans6", "ans<i> needs 0 <= i <= 5"),
        ("a5", "a<i> needs 0 <= i <= 4"),
    ],
)
def test_bad_labels(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_label(Task("add", 3), spec)
    with pytest.raises(ValueError, match="carries are defined for add, sub and mul"):
        parse_label(Task("addmod", 2, modulus=101), "carry1")
