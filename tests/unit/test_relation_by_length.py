"""Relation by length on planted relations: answer functions whose exact and truncated rates are
known by hand (the checkpoints' figures are in tests/integration/test_equivalence.py)."""

import math

import pytest
import torch

from mechinterp_arith import Task, data
from mechinterp_arith.analysis.relation_by_length import check_lengths, relations_by_length


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval, written out (not scipy's)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def truncated_but_wrong_when_a_ends_in_3(a, b):
    """(a mod 100) + (b mod 100), plus one whenever a's units digit is 3: right on 9 of 10 units digits."""
    return (a % 100) + (b % 100) + (a % 10 == 3).astype(int)


def test_planted_truncation_with_a_known_error_rate():
    task = Task("add", 2, width=4)
    table = relations_by_length(task, truncated_but_wrong_when_a_ends_in_3, lengths=[1, 2, 3, 4], n=10_000, seed=0)
    # m = 1: all 100 pairs of 0..9, a = 3 in 10 of them; m = 2: all 8,100 pairs of 10..99, a ends in 3 in 810
    assert table.loc[1, ["n", "exhaustive"]].tolist() == [100, True]
    assert table.loc[2, ["n", "exhaustive"]].tolist() == [8100, True]
    for m, n in ((1, 100), (2, 8100)):
        assert table.loc[m, "exact"] == table.loc[m, "truncated"] == 0.9  # below 10^2 truncation is the truth
        assert table.loc[m, ["exact_lo", "exact_hi"]].tolist() == pytest.approx(wilson(n * 9 // 10, n), abs=1e-9)
        assert table.loc[m, "best"] == "a + b" and table.loc[m, "best_coverage"] == 0.9  # ties go to the truth
        assert "(a mod 10^2) + (b mod 10^2)" in table.loc[m, "tied_with"]
    for m in (3, 4):  # 10,000 draws: never exact (a >= 100), truncated wherever a does not end in 3
        (a, _), exhaustive = data.length_pairs(task, m, 10_000, seed=0)
        hits = int((a % 10 != 3).sum())
        assert not exhaustive and table.loc[m, "n"] == 10_000 and table.loc[m, "exact"] == 0.0
        assert table.loc[m, "truncated"] == hits / 10_000 and 0.88 < hits / 10_000 < 0.92
        assert table.loc[m, ["truncated_lo", "truncated_hi"]].tolist() == pytest.approx(wilson(hits, 10_000), abs=1e-9)
        assert table.loc[m, "best"] == "(a mod 10^2) + (b mod 10^2)" and table.loc[m, "fits"]
        assert table.loc[m, "best_coverage"] == table.loc[m, "truncated"] and table.loc[m, "tied_with"] == []
    assert table.loc[3, "per_digit"][0] == pytest.approx(hits / 10_000, abs=0.02)  # the units digit is off by one
    assert table.attrs == {"truncated_relation": "(a mod 10^2) + (b mod 10^2)", "operands": "both"}


def test_planted_modular_and_subtraction_relations():
    mod = Task("addmod", 2, width=4, modulus=101)
    table = relations_by_length(mod, lambda a, b: ((a % 100) + (b % 100)) % 101, n=3000, seed=1)
    assert list(table.index) == [1, 2, 3, 4] and (table["truncated"] == 1.0).all()
    assert (table.loc[[1, 2], "exact"] == 1.0).all() and (table.loc[[3, 4], "exact"] < 0.05).all()
    assert (table.loc[[3, 4], "best"] == "((a mod 10^2) + (b mod 10^2)) mod 101").all()
    sub = Task("sub", 2, width=3)
    table = relations_by_length(sub, lambda a, b: abs(a % 100 - b % 100), n=3000, seed=0)
    assert table.loc[1, ["n", "exhaustive", "exact"]].tolist() == [55, True, 1.0]  # 0..9 with a >= b
    # |a mod 100 - b mod 100| = a - b when the hundreds digits agree, or differ by one and a mod 100 = b mod 100 - 50
    (a, b), _ = data.length_pairs(sub, 3, 3000, seed=0)
    exact = (a // 100 == b // 100) | ((a // 100 - b // 100 == 1) & (a % 100 - b % 100 == -50))
    assert (table["truncated"] == 1.0).all() and table.loc[3, "exact"] == float(exact.mean())


def test_either_sets_and_bad_lengths():
    task = Task("add", 2, width=4)
    table = relations_by_length(task, lambda a, b: a + b, lengths=[2, 3], n=500, operands="either", seed=3)
    assert table.loc[2, ["n", "exhaustive"]].tolist() == [500, False] and (table["exact"] == 1.0).all()
    assert table.attrs["operands"] == "either"
    with pytest.raises(ValueError, match="length m=5 does not fit the format"):
        check_lengths(task, [1, 5])
    with pytest.raises(ValueError, match="operands must be 'both' or 'either'"):
        relations_by_length(task, lambda a, b: a + b, lengths=[1], operands="all")
    assert torch.equal(torch.tensor(check_lengths(task, [3, 1, 3])), torch.tensor([1, 3]))
