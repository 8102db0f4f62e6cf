"""Operand sets: in-distribution train/test splits and out-of-distribution sets.

Every set is a pair of int64 tensors ``(a, b)`` and is a pure function of its arguments and seed.

>>> from mechinterp_arith import Task
>>> split = id_split(Task("add", digits=3), seed=0)      # 10,000 train + 10,000 test pairs
>>> len(split.train_a), len(split.test_a)
(10000, 10000)
>>> a, b = ood_both(Task("add", digits=3), m=4, n=1000, seed=0)   # both operands exactly 4 digits
>>> bool(((a >= 1000) & (a < 10000)).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from .tasks import Task

Pairs = tuple[Int[Tensor, "n"], Int[Tensor, "n"]]


@dataclass(frozen=True)
class Split:
    """Disjoint ID train and test operand pairs."""

    train_a: Int[Tensor, "n_train"]
    train_b: Int[Tensor, "n_train"]
    test_a: Int[Tensor, "n_test"]
    test_b: Int[Tensor, "n_test"]

    @property
    def train(self) -> Pairs:
        return self.train_a, self.train_b

    @property
    def test(self) -> Pairs:
        return self.test_a, self.test_b


def id_pair_count(task: Task) -> int:
    """How many n-digit operand pairs the task admits (a >= b for subtraction)."""
    N = 10**task.digits
    return N * (N + 1) // 2 if task.op == "sub" else N * N


def default_split_sizes(task: Task) -> tuple[int, int]:
    """The study's 10,000 + 10,000, shrunk to half of the pairs each when fewer exist."""
    total = id_pair_count(task)
    if total >= 20_000:
        return 10_000, 10_000
    n_train = int(total * 0.8)
    return n_train, total - n_train


def id_split(task: Task, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Split:
    """Train and test pairs drawn without replacement from all n-digit pairs: disjoint by construction."""
    d_train, d_test = default_split_sizes(task)
    n_train = d_train if n_train is None else n_train
    n_test = d_test if n_test is None else n_test
    total = id_pair_count(task)
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if n_train + n_test > total:
        raise ValueError(f"{task.name} has only {total} operand pairs; asked for {n_train} + {n_test}")
    rng = np.random.default_rng(seed)
    index = rng.choice(total, size=n_train + n_test, replace=False)
    a, b = _pair_from_index(task, torch.from_numpy(index.astype(np.int64)))
    return Split(a[:n_train], b[:n_train], a[n_train:], b[n_train:])


def _pair_from_index(task: Task, index: Int[Tensor, "n"]) -> Pairs:
    N = 10**task.digits
    if task.op != "sub":
        return index // N, index % N
    # enumerate pairs with a >= b row by row: row a holds a + 1 pairs, starting at a(a+1)/2
    a = ((torch.sqrt(8 * index.double() + 1) - 1) / 2).floor().long()
    a = torch.where(a * (a + 1) // 2 > index, a - 1, a)
    a = torch.where((a + 1) * (a + 2) // 2 <= index, a + 1, a)
    return a, index - a * (a + 1) // 2


def operands_with_digits(length: int, n: int, generator: torch.Generator) -> Int[Tensor, "n"]:
    """``n`` integers with exactly ``length`` digits (0-9 count as one digit)."""
    lo = 0 if length == 1 else 10 ** (length - 1)
    return torch.randint(lo, 10**length, (n,), generator=generator)


def ood_lengths(task: Task, len_a: int, len_b: int, n: int, seed: int = 0) -> Pairs:
    """``n`` pairs with a of exactly ``len_a`` digits and b of exactly ``len_b`` digits.

    Drawn with replacement (the sets are large; repeats are rare and harmless for rates).
    For subtraction, pairs are ordered so that a >= b.
    """
    for name, length in (("len_a", len_a), ("len_b", len_b)):
        if not 1 <= length <= task.width:
            raise ValueError(f"{name}={length} does not fit the format (1..{task.width} digits)")
    g = torch.Generator().manual_seed(seed * 1_000_003 + 97 * len_a + len_b)
    a = operands_with_digits(len_a, n, g)
    b = operands_with_digits(len_b, n, g)
    if task.op == "sub":
        a, b = torch.maximum(a, b), torch.minimum(a, b)
    return a, b


def ood_both(task: Task, m: int, n: int = 10_000, seed: int = 0) -> Pairs:
    """Both operands exactly ``m`` digits (the study's OOD setting for m > n)."""
    return ood_lengths(task, m, m, n, seed)


def ood_one_longer(task: Task, m: int, n: int = 10_000, seed: int = 0) -> Pairs:
    """One operand of exactly ``m`` digits, the other in distribution (< 10^n); which one is random."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * m + 1)
    long_ = operands_with_digits(m, n, g)
    short = torch.randint(0, 10**task.digits, (n,), generator=g)
    first = torch.rand(n, generator=g) < 0.5
    a, b = torch.where(first, long_, short), torch.where(first, short, long_)
    if task.op == "sub":
        a, b = torch.maximum(a, b), torch.minimum(a, b)
    return a, b


def length_grid(task: Task, lengths: list[int], n_per_cell: int, seed: int = 0) -> dict[tuple[int, int], Pairs]:
    """A set per (len_a, len_b) cell of the grid ``lengths x lengths``."""
    return {(la, lb): ood_lengths(task, la, lb, n_per_cell, seed) for la in lengths for lb in lengths}


def random_pairs(task: Task, n: int, seed: int = 0, max_value: int | None = None) -> Pairs:
    """Uniform pairs in [0, max_value) (default 10^n), a >= b for subtraction."""
    hi = 10**task.digits if max_value is None else max_value
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, hi, (n,), generator=g), torch.randint(0, hi, (n,), generator=g)
    if task.op == "sub":
        a, b = torch.maximum(a, b), torch.minimum(a, b)
    return a, b
