"""The relation finder and its statistics on synthetic outputs: no model."""

import numpy as np
import pytest
import torch

from mechinterp_arith import data
from mechinterp_arith.analysis.equivalence import FIT_THRESHOLD, find_relation, wilson_interval
from mechinterp_arith.core.tasks import Task


def test_wilson_interval_is_a_proper_interval():
    lo, hi = wilson_interval(95, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.8882, 0.9785)  # the textbook value
    assert wilson_interval(0, 50)[0] == 0 and 0 < wilson_interval(0, 50)[1] < 0.1
    assert wilson_interval(50, 50)[1] == 1 and 0.9 < wilson_interval(50, 50)[0] < 1
    for k, n in [(1, 3), (7, 10), (500, 1000)]:
        lo, hi = wilson_interval(k, n)
        assert 0 <= lo < k / n < hi <= 1
    assert (
        wilson_interval(500, 1000)[1] - wilson_interval(500, 1000)[0]
        < wilson_interval(5, 10)[1] - wilson_interval(5, 10)[0]
    )
    with pytest.raises(ValueError, match="hits=11"):
        wilson_interval(11, 10)


def test_finder_names_a_planted_relation_and_refuses_noise():
    task = Task("add", digits=3)
    a, b = data.ood_both(task, 4, 2000, seed=1)
    planted = (a % 1000) + (b % 1000)
    planted[:100] += 1  # 5% counter-examples
    s = find_relation(task, a, b, planted)
    assert s.fits and s.best.name == "(a mod 10^3) + (b mod 10^3)" and s.best.modulus == 1000
    assert s.best.hits == 1900 and s.n_counterexamples == 100
    assert list(s.counterexamples.columns) == ["a", "b", "output", "true", "equivalent"]
    assert (s.counterexamples.output == s.counterexamples.equivalent + 1).all()
    # "true answer mod 10^3" matches only the pairs that do not carry into the thousands
    mod = next(r for r in s.relations if r.name == "(a + b) mod 10^3")
    no_carry = ((a % 1000 + b % 1000) < 1000) & (np.arange(2000) >= 100)  # and not a planted counter-example
    assert mod.hits == int(no_carry.sum()) and 0.3 < mod.coverage < 0.6
    noise = torch.randint(0, 20000, (2000,), generator=torch.Generator().manual_seed(0))
    s = find_relation(task, a, b, noise)
    assert not s.fits and s.best is None and s.top.coverage < 0.01
    assert s.verdict.startswith("no relation fits (best coverage")
    # a relation covering slightly under half does not fit either
    half = np.where(np.arange(2000) < 900, planted, noise.numpy())
    assert not find_relation(task, a, b, half).fits and FIT_THRESHOLD == 0.5


def test_ties_go_to_the_larger_modulus_and_true_answer():
    task = Task("addmod", digits=2, modulus=100)
    a, b = data.ood_both(task, 4, 500, seed=0)
    s = find_relation(task, a, b, task.apply(a, b))
    assert s.best.kind == "true" and s.best.coverage == 1.0
    assert "((a mod 10^2) + (b mod 10^2)) mod 100" in s.tied_with  # indistinguishable, listed
    task = Task("addmod", digits=2, modulus=101)
    s = find_relation(task, a, b, task.apply(a % 100, b % 100))
    assert s.best.name == "((a mod 10^2) + (b mod 10^2)) mod 101" and "(a + b) mod 101" not in s.tied_with
