import numpy as np
import pytest

from mechinterp_arith import Task, data


def _keys(a, b, base):
    return set((a * base + b).tolist())


def test_id_split_is_disjoint_complete_and_seeded():
    task = Task("add", 3)
    s = data.id_split(task, seed=0)
    assert len(s.train_a) == len(s.test_a) == 10_000
    train, test = _keys(*s.train, 1000), _keys(*s.test, 1000)
    assert len(train) == 10_000 and len(test) == 10_000  # no repeats within a split
    assert not train & test  # disjoint
    assert int(np.concatenate([s.train_a, s.test_a]).max()) < 1000
    again = data.id_split(task, seed=0)
    assert np.array_equal(s.train_a, again.train_a) and np.array_equal(s.test_b, again.test_b)
    other = data.id_split(task, seed=1)
    assert not np.array_equal(s.train_a, other.train_a)


def test_subtraction_split_keeps_a_ge_b_and_covers_all_pairs():
    task = Task("sub", 2)
    assert data.id_pair_count(task) == 100 * 101 // 2
    s = data.id_split(task, n_train=4000, n_test=1050, seed=3)
    a = np.concatenate([s.train_a, s.test_a])
    b = np.concatenate([s.train_b, s.test_b])
    assert (a >= b).all() and (a < 100).all()
    assert len(_keys(a, b, 100)) == 5050  # every pair exactly once


def test_small_task_default_sizes_and_too_many_pairs():
    task = Task("add", 2)
    assert data.default_split_sizes(task) == (8000, 2000)
    try:
        data.id_split(task, n_train=9000, n_test=2000)
    except ValueError as e:
        assert "only 10000" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_ood_sets_have_the_requested_lengths():
    task = Task("add", 3)
    a, b = data.ood_both(task, 4, 5000, seed=0)
    assert ((a >= 1000) & (a < 10000) & (b >= 1000) & (b < 10000)).all()
    a2, b2 = data.ood_both(task, 4, 5000, seed=0)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    a, b = data.ood_one_longer(task, 5, 2000, seed=0)
    long_a, long_b = a >= 10000, b >= 10000
    assert (long_a ^ long_b).all() and (np.where(long_a, b, a) < 1000).all()
    assert 0.4 < long_a.mean() < 0.6
    grid = data.length_grid(task, [3, 4], 100)
    assert set(grid) == {(3, 3), (3, 4), (4, 3), (4, 4)}
    a, b = grid[(3, 4)]
    assert ((a >= 100) & (a < 1000) & (b >= 1000)).all()


def test_the_follow_ups_either_set_has_one_n_digit_operand_by_a_coin_flip():
    """Their D_n: one operand exactly n digits (a coin flip says which), the other uniform below 10^n;
    so both have n digits with probability 0.9 (n >= 2), and every pair is distinct."""
    task = Task("add", 4)
    s = data.id_split(task, n_train=18_000, n_test=2_000, seed=0, lengths="either")
    a, b = np.concatenate([s.train_a, s.test_a]), np.concatenate([s.train_b, s.test_b])
    assert (np.maximum(a, b) >= 1000).all() and (np.maximum(a, b) < 10_000).all()
    assert len(_keys(a, b, 10_000)) == 20_000 and not _keys(*s.train, 10_000) & _keys(*s.test, 10_000)
    both = float(((a >= 1000) & (b >= 1000)).mean())
    assert abs(both - 0.9) < 4 * (0.9 * 0.1 / 20_000) ** 0.5  # binomial: 4 standard errors
    assert abs(float((a >= 1000).mean()) - 0.95) < 0.01  # a is the long one half the time, else 0.9
    again = data.id_split(task, n_train=18_000, n_test=2_000, seed=0, lengths="either")
    assert np.array_equal(s.train_a, again.train_a)


def test_mixed_ranges_take_equal_shares_and_small_sets_pass_theirs_on():
    """either:4-5 is their D_45 (half 4-digit, half 5-digit); both:1-2 holds all 100 one-digit pairs and
    8,100 two-digit ones, so 2,000 pairs are 100 one-digit and 1,900 two-digit."""
    a, b = data.length_set_pairs(Task("add", 5), "either", [4, 5], 10_000, seed=1)
    longest = np.maximum(a, b)
    assert int((longest >= 10_000).sum()) == 5000 and int(((longest >= 1000) & (longest < 10_000)).sum()) == 5000
    a, b = data.length_set_pairs(Task("add", 2), "both", [1, 2], 2000, seed=0)
    one = (a < 10) & (b < 10)
    assert int(one.sum()) == 100 and len(_keys(a[one], b[one], 10)) == 100
    assert ((a[~one] >= 10) & (b[~one] >= 10)).all() and len(_keys(a, b, 100)) == 2000
    a, b = data.length_set_pairs(Task("sub", 2), "both", [1, 2], 3000, seed=0)
    assert (a >= b).all() and int(((a < 10) & (b < 10)).sum()) == 55  # 55 one-digit pairs with a >= b
    assert data.length_set_size(Task("sub", 2), "both", [2]) == 90 * 91 // 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ("either:3-5", "reach 5 digits but add4 is trained on digits=4"),
        ("either:5-4", "need 1 <= L <= N"),
        ("either:x", "malformed operand lengths"),
        ("mixed:1-4", "unknown operand lengths"),
        ("longest", "unknown operand lengths"),
    ],
)
def test_bad_operand_lengths_are_one_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        data.id_split(Task("add", 4), 10, 10, lengths=spec)


def test_length_pairs_are_every_pair_when_few_exist():
    (a, b), exhaustive = data.length_pairs(Task("add", 2), 2, 10_000)
    assert exhaustive and len(a) == 8100 and len(_keys(a, b, 100)) == 8100 and (a >= 10).all() and (b >= 10).all()
    (a, b), exhaustive = data.length_pairs(Task("sub", 3), 1, 10_000)
    assert exhaustive and len(a) == 55 and (a >= b).all()
    (a, b), exhaustive = data.length_pairs(Task("add", 3), 5, 500, seed=2, operands="either")
    assert not exhaustive and len(a) == 500 and (np.maximum(a, b) >= 10_000).all()
