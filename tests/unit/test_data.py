import torch

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
    assert int(torch.cat([s.train_a, s.test_a]).max()) < 1000
    again = data.id_split(task, seed=0)
    assert torch.equal(s.train_a, again.train_a) and torch.equal(s.test_b, again.test_b)
    other = data.id_split(task, seed=1)
    assert not torch.equal(s.train_a, other.train_a)


def test_subtraction_split_keeps_a_ge_b_and_covers_all_pairs():
    task = Task("sub", 2)
    assert data.id_pair_count(task) == 100 * 101 // 2
    s = data.id_split(task, n_train=4000, n_test=1050, seed=3)
    a = torch.cat([s.train_a, s.test_a])
    b = torch.cat([s.train_b, s.test_b])
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
    assert torch.equal(a, a2) and torch.equal(b, b2)
    a, b = data.ood_one_longer(task, 5, 2000, seed=0)
    long_a, long_b = a >= 10000, b >= 10000
    assert (long_a ^ long_b).all() and (torch.where(long_a, b, a) < 1000).all()
    assert 0.4 < long_a.float().mean() < 0.6
    grid = data.length_grid(task, [3, 4], 100)
    assert set(grid) == {(3, 3), (3, 4), (4, 3), (4, 4)}
    a, b = grid[(3, 4)]
    assert ((a >= 100) & (a < 1000) & (b >= 1000)).all()
