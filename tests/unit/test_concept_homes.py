"""The homes of concepts that front ends used to rebuild: the example pair of a task, the default OOD
length (NotApplicable where the format holds none), digits, in/out of distribution, answers written
into tokens, and the OOD rule's rate. Nothing here trains: checkpoints are untrained models."""

from __future__ import annotations

import pytest
import torch

from mechinterp_arith import Checkpoint, ModelConfig, Task, build_model
from mechinterp_arith.analysis.attention import class_attention
from mechinterp_arith.analysis.circuits import ood_sites
from mechinterp_arith.analysis.equivalence import analyse_checkpoint
from mechinterp_arith.analysis.length_generalisation import length_profile
from mechinterp_arith.analysis.matching import match_ood
from mechinterp_arith.core import data
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.evaluate import answer_rates
from mechinterp_arith.core.numbers import digit_at, digit_count, with_digit
from mechinterp_arith.core.positions import write_answers

EVERY_TASK = [
    Task(op, digits, format=fmt, width=width, modulus=101 if op.endswith("mod") else None)
    for op in ("add", "sub", "mul", "addmod", "mulmod")
    for fmt in ("paper", "plain", "reversed")
    for width in (3, 5)
    for digits in range(1, width + 1)
]


@pytest.mark.parametrize("task", EVERY_TASK, ids=lambda t: f"{t.name}-{t.format}-w{t.width}")
def test_the_example_pair_is_valid_for_every_task_and_width(task):
    a, b = data.example_pair(task)
    text = task.to_text(a, b)  # raises for an operand the task does not admit (sub: a >= b; too wide)
    assert task.from_text(text)[:2] == (a, b) and a < 10**task.digits and b < 10**task.digits
    assert (a, b) == tuple(int(x[0]) for x in task.id_representative(torch.tensor([349]), torch.tensor([705])))
    for m in range(1, task.width + 1):
        x, y = data.example_pair(task, m)
        assert len(str(x)) == len(str(y)) == m and x >= y
        task.to_text(x, y)


def test_the_example_pair_of_a_3_digit_subtraction_keeps_a_at_least_b():
    assert data.example_pair(Task("sub", 3)) == (705, 349)  # 349 - 705 is no subtraction the task admits
    assert data.example_pair(Task("add", 3)) == (349, 705)
    with pytest.raises(ValueError, match="m=6 does not fit"):
        data.example_pair(Task("add", 3), m=6)


def test_ood_lengths_come_from_one_place():
    add3, full = Task("add", 3), Task("add", 5)
    assert data.default_ood_digits(add3) == 4 and data.default_ood_digits(full) is None
    assert data.ood_digits_range(add3) == [4, 5] and data.ood_digits_range(add3, count=1) == [4]
    assert data.ood_digits_range(full) == [] and data.require_ood_digits(add3) == 4
    with pytest.raises(NotApplicable, match="holds no operand longer"):
        data.require_ood_digits(full)
    with pytest.raises(ValueError, match="m=3 must exceed"):
        data.require_ood_digits(add3, 3)


@pytest.fixture(scope="module")
def full_width():
    """An untrained checkpoint whose format holds no operand longer than the trained 2 digits."""
    task = Task("add", 2, width=2)
    mcfg = ModelConfig.for_task(task, n_layers=1, n_heads=1, d_model=16, d_mlp=32)
    return Checkpoint(build_model(mcfg, device="cpu", task=task), task, mcfg)


@pytest.mark.parametrize(
    "analysis",
    [
        lambda c: match_ood(c, n=4),
        lambda c: analyse_checkpoint(c, n=4),
        lambda c: ood_sites(c, n=4),
        lambda c: length_profile(c, n=4),
        lambda c: class_attention(c, 12, 34),
    ],
    ids=["match_ood", "analyse_checkpoint", "ood_sites", "length_profile", "class_attention"],
)
def test_an_analysis_needing_a_longer_operand_says_it_does_not_apply(full_width, analysis):
    """match_ood and analyse_checkpoint raised ValueError here, before the default OOD length had one home."""
    with pytest.raises(NotApplicable, match="holds no operand longer than the trained 2 digits"):
        analysis(full_width)


def test_digits_of_integers():
    x = torch.tensor([0, 7, 10, 349, 99_999, 10**17])
    assert digit_count(x).tolist() == [1, 1, 2, 3, 5, 18]
    assert digit_at(x, 0).tolist() == [0, 7, 0, 9, 9, 0] and digit_at(x, 17).tolist() == [0, 0, 0, 0, 0, 1]
    assert with_digit(torch.tensor([349, 705]), torch.tensor([0, 2]), torch.tensor([5, 1])).tolist() == [345, 105]


def test_in_distribution_and_written_answers():
    task = Task("add", 3, format="plain")  # 00349+00705=001054.: answer most significant digit first
    a, b = torch.tensor([349, 1349, 999]), torch.tensor([705, 705, 1000])
    assert data.in_distribution(task, a, b).tolist() == [True, False, False]
    tokens, _ = task.encode_batch(a[:1], b[:1])
    forced = write_answers(task, tokens, torch.tensor([2054]))
    assert task.from_text("".join(task.vocab[t] for t in forced[0].tolist())) == (349, 705, 2054)
    assert torch.equal(forced[:, : task.prompt_len], tokens[:, : task.prompt_len])
    with pytest.raises(ValueError, match="answers must lie in"):
        write_answers(task, tokens, torch.tensor([10**7]))


def test_answer_rates_count_true_and_rule_answers():
    task = Task("add", 3)
    a, b = torch.tensor([1349, 1349, 1349, 1349]), torch.tensor([705, 705, 705, 705])
    rates = answer_rates(None, task, a, b, answers=torch.tensor([2054, 1054, 1054, 7]))
    assert rates == {"n": 4, "exact": 0.25, "equivalent": 0.5}
