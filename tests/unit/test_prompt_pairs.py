"""Clean/corrupted prompt pairs of add3's task: which tokens and answer digits differ."""

import numpy as np
import pytest

from mechinterp_arith.analysis.prompt_pairs import (
    carry_pairs,
    change_operand_digit,
    differ_in_answer_digit,
    ood_id_pairs,
)
from mechinterp_arith.core.positions import operand_pos, position_labels


def test_operand_digit_pairs_keep_length_and_change_one_digit(add3):
    task = add3.task
    for op in ("a", "b"):
        for place in range(3):
            pairs = change_operand_digit(task, n=32, operand=op, place=place, seed=place)
            assert pairs.clean_tokens.shape == pairs.corrupted_tokens.shape == (32, task.n_ctx)
            diff = pairs.clean_tokens != pairs.corrupted_tokens
            prompt_diff = diff[:, : task.prompt_len]
            assert prompt_diff[:, operand_pos(task, op, place)].all()
            assert prompt_diff.sum(1).eq(1).all()


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_answer_digit_pairs_differ_in_exactly_digit_k(add3, k):
    pairs = differ_in_answer_digit(add3.task, k, n=32, seed=0)
    diff = pairs.clean_digits != pairs.corrupted_digits
    assert diff[:, k].all() and diff.sum(1).eq(1).all()
    assert (pairs.clean_a < 1000).all() and (pairs.corrupted_b < 1000).all()


def test_impossible_answer_digits_are_errors(add3):
    with pytest.raises(ValueError, match="always 0"):
        differ_in_answer_digit(add3.task, 4, n=4)
    with pytest.raises(ValueError, match="answer digit 9 is out of range"):
        differ_in_answer_digit(add3.task, 9, n=4)
    with pytest.raises(ValueError, match="place 3 is out of range"):
        change_operand_digit(add3.task, n=4, place=3)


def test_carry_and_ood_pairs(add3):
    task = add3.task
    pairs = carry_pairs(task, 2, n=32, seed=0)
    assert ((pairs.clean_a % 100 + pairs.clean_b % 100) >= 100).all()
    assert ((pairs.corrupted_a % 100 + pairs.corrupted_b % 100) < 100).all()
    ood = ood_id_pairs(task, n=32, m=4, seed=0)
    assert (ood.corrupted_a >= 1000).all() and np.array_equal(ood.clean_a, ood.corrupted_a % 1000)
    assert ood.differing_positions() == [1, 6]  # the thousands digits of a and b, nothing else
    assert position_labels(task)[1] == "a3" and position_labels(task)[6] == "b3"
