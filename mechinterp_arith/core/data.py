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

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from .choices import MAX_SAMPLES
from .errors import NotApplicable
from .seeding import generator, rng
from .tasks import Task, as_operands, digit_count

Pairs = tuple[Int[Tensor, " n"], Int[Tensor, " n"]]


@dataclass(frozen=True)
class Split:
    """Disjoint ID train and test operand pairs."""

    train_a: Int[Tensor, " n_train"]
    train_b: Int[Tensor, " n_train"]
    test_a: Int[Tensor, " n_test"]
    test_b: Int[Tensor, " n_test"]

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


def id_split(
    task: Task, n_train: int | None = None, n_test: int | None = None, seed: int = 0, lengths: str = "uniform"
) -> Split:
    """Train and test pairs drawn without replacement from all n-digit pairs: disjoint by construction.

    ``lengths``: "uniform" draws pairs uniformly (most operands then have n digits); "mixed" draws
    each operand's digit count uniformly from 1..n first (:func:`mixed_length_pairs`).
    """
    d_train, d_test = default_split_sizes(task)
    n_train = d_train if n_train is None else n_train
    n_test = d_test if n_test is None else n_test
    total = id_pair_count(task)
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if n_train + n_test > total:
        raise ValueError(f"{task.name} has only {total} operand pairs; asked for {n_train} + {n_test}")
    if lengths == "mixed":
        a, b = mixed_length_pairs(task, n_train + n_test, seed)
        return Split(a[:n_train], b[:n_train], a[n_train:], b[n_train:])
    if lengths != "uniform":
        raise ValueError(f"unknown operand lengths {lengths!r}; choose uniform or mixed")
    # rng(seed) is numpy's default_rng(seed): the split of the shipped checkpoints, kept as it was
    index = rng(seed).choice(total, size=n_train + n_test, replace=False)
    a, b = _pair_from_index(task, torch.from_numpy(index.astype(np.int64)))
    return Split(a[:n_train], b[:n_train], a[n_train:], b[n_train:])


def _pair_from_index(task: Task, index: Int[Tensor, " n"]) -> Pairs:
    N = 10**task.digits
    if task.op != "sub":
        return index // N, index % N
    # enumerate pairs with a >= b row by row: row a holds a + 1 pairs, starting at a(a+1)/2
    a = ((torch.sqrt(8 * index.double() + 1) - 1) / 2).floor().long()
    a = torch.where(a * (a + 1) // 2 > index, a - 1, a)
    a = torch.where((a + 1) * (a + 2) // 2 <= index, a + 1, a)
    return a, index - a * (a + 1) // 2


MIXED_DRAW_ROUNDS = 64
ENUMERATE_LIMIT = 10**7  # mixed lengths: sets of at most this many pairs are sampled exactly


def mixed_length_pairs(task: Task, n: int, seed: int = 0) -> Pairs:
    """``n`` distinct ID pairs drawn so that every (digits of a, digits of b) cell is equally likely
    (each operand's digit count uniform in 1..n_digits, as in the position-coupling and abacus
    papers), in the order drawn. A cell that runs out of pairs (there are only 100 one-digit
    pairs) passes its share to the others. Exact weighted sampling without replacement
    (Efraimidis-Spirakis keys) when the task has at most ``ENUMERATE_LIMIT`` pairs, else rounds of
    draws with duplicates dropped."""
    check_count(n)
    total = id_pair_count(task)
    if n > total:
        raise ValueError(f"{task.name} has only {total:,} operand pairs; asked for {n:,}")
    g = generator(seed, "mixed_lengths")
    if total <= ENUMERATE_LIMIT:
        a, b = _pair_from_index(task, torch.arange(total))
        cell = digit_count(a) * (task.digits + 1) + digit_count(b)
        cell_size = torch.bincount(cell)[cell].double()
        keys = torch.rand(total, generator=g, dtype=torch.float64).log() * cell_size  # log(U) / weight
        chosen = keys.topk(n).indices
        return a[chosen], b[chosen]
    N = 10**task.digits
    drawn = np.zeros(0, dtype=np.int64)
    for _ in range(MIXED_DRAW_ROUNDS):
        lengths = torch.randint(1, task.digits + 1, (2, 2 * n), generator=g)
        a, b = ordered(task, _values_with_lengths(lengths[0], g), _values_with_lengths(lengths[1], g))
        drawn = np.concatenate([drawn, (a * N + b).numpy()])
        _, first = np.unique(drawn, return_index=True)
        drawn = drawn[np.sort(first)]  # distinct pairs, in the order they were drawn
        if len(drawn) >= n:
            chosen = torch.from_numpy(drawn[:n])
            return chosen // N, chosen % N
    raise ValueError(f"could not draw {n:,} distinct mixed-length pairs of {task.name}; ask for fewer")


def _values_with_lengths(lengths: Int[Tensor, " n"], g: torch.Generator) -> Int[Tensor, " n"]:
    lo = torch.where(lengths == 1, 0, 10 ** (lengths - 1))
    return lo + (torch.rand(len(lengths), generator=g, dtype=torch.float64) * (10**lengths - lo)).long()


def operands_with_digits(length: int, n: int, g: torch.Generator) -> Int[Tensor, " n"]:
    """``n`` integers with exactly ``length`` digits (0-9 count as one digit)."""
    lo = 0 if length == 1 else 10 ** (length - 1)
    return torch.randint(lo, 10**length, (n,), generator=g)


def ordered(task: Task, a: Int[Tensor, " n"], b: Int[Tensor, " n"]) -> Pairs:
    """The pairs the task admits from raw draws: ``a >= b`` (swapped where needed) for subtraction."""
    if task.op == "sub":
        return torch.maximum(a, b), torch.minimum(a, b)
    return a, b


def check_count(n: int, name: str = "n") -> int:
    """``n`` if it is a usable sample size (1 .. 10^8), else a ValueError naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"{name} must be an integer between 1 and {MAX_SAMPLES:,}, got {n!r}")
    return n


def default_ood_digits(task: Task) -> int | None:
    """The study's OOD operand length, n + 1, when the format holds it; else None."""
    return task.digits + 1 if task.digits < task.width else None


def in_distribution(task: Task, a: Int[Tensor, " n"], b: Int[Tensor, " n"]) -> Bool[Tensor, " n"]:
    """Whether each pair is in distribution: both operands below 10^n (at most the trained n digits).

    >>> in_distribution(Task("add", 3), torch.tensor([349, 1349]), torch.tensor([705, 705])).tolist()
    [True, False]
    """
    N = 10**task.digits
    return (as_operands(a) < N) & (as_operands(b) < N)


def ood_digits_range(task: Task, count: int | None = None) -> list[int]:
    """The OOD operand lengths n + 1, n + 2, ... the format holds (at most ``count`` of them);
    [] when it holds none.

    >>> ood_digits_range(Task("add", 3)), ood_digits_range(Task("add", 3), count=1), ood_digits_range(Task("add", 5))
    ([4, 5], [4], [])
    """
    top = task.width if count is None else min(task.width, task.digits + count)
    return list(range(task.digits + 1, top + 1))


EXAMPLE = (349, 705)  # the study's running example: 349 + 705 = 1054, and 1349 + 705 answered as it


def example_pair(task: Task, m: int | None = None) -> tuple[int, int]:
    """One operand pair to show ``task`` with, valid for every operation and width: the ID
    representative of the study's 349 + 705 (``Task.id_representative``: a mod 10^n, b mod 10^n,
    a >= b for subtraction); with ``m``, a pair of ``m``-digit operands (99..94 and 11..1).

    >>> example_pair(Task("add", 3)), example_pair(Task("sub", 3)), example_pair(Task("add", 2)), example_pair(Task("add", 3), m=5)
    ((349, 705), (705, 349), (49, 5), (99994, 11111))
    """
    if m is None:
        a, b = task.id_representative(as_operands(EXAMPLE[0]), as_operands(EXAMPLE[1]))
        return int(a[0]), int(b[0])
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= task.width:
        raise ValueError(f"m={m!r} does not fit the format (1..{task.width} digits)")
    return int("9" * (m - 1) + "4"), int("1" * m)


def require_ood_digits(task: Task, m: int | None = None) -> int:
    """``m`` (default n + 1) checked as an OOD operand length; :class:`NotApplicable` when the
    format holds no operand longer than the trained length."""
    if m is None:
        m = default_ood_digits(task)
        if m is None:
            raise NotApplicable(
                f"the format holds no operand longer than the trained {task.digits} digits (width W={task.width})"
            )
    return check_ood_digits(task, [m])[0]


def check_ood_digits(task: Task, ood_digits: Iterable[int]) -> list[int]:
    """Validate OOD operand lengths: each m must satisfy n < m <= W (ValueError naming the bad one)."""
    ms = [int(m) for m in ood_digits]
    if not ms:
        raise ValueError("give at least one OOD operand length (--ood-digits)")
    for m in ms:
        if m <= task.digits:
            raise ValueError(f"OOD length m={m} must exceed the trained length n={task.digits} (m > n)")
        if m > task.width:
            raise ValueError(f"OOD length m={m} does not fit the format: width W={task.width} digits at most")
    return ms


def ood_lengths(task: Task, len_a: int, len_b: int, n: int, seed: int = 0) -> Pairs:
    """``n`` pairs with a of exactly ``len_a`` digits and b of exactly ``len_b`` digits.

    Drawn with replacement (the sets are large; repeats are rare and harmless for rates).
    For subtraction, pairs are ordered so that a >= b.
    """
    for name, length in (("len_a", len_a), ("len_b", len_b)):
        if not 1 <= length <= task.width:
            raise ValueError(f"{name}={length} does not fit the format (1..{task.width} digits)")
    check_count(n)
    g = generator(seed, "lengths", len_a, len_b)
    a = operands_with_digits(len_a, n, g)
    b = operands_with_digits(len_b, n, g)
    return ordered(task, a, b)


def ood_both(task: Task, m: int, n: int = 10_000, seed: int = 0) -> Pairs:
    """Both operands exactly ``m`` digits (the study's OOD setting for m > n)."""
    return ood_lengths(task, m, m, n, seed)


def ood_one_longer(task: Task, m: int, n: int = 10_000, seed: int = 0) -> Pairs:
    """One operand of exactly ``m`` digits, the other in distribution (< 10^n); which one is random."""
    if not 1 <= m <= task.width:
        raise ValueError(f"m={m} does not fit the format (1..{task.width} digits)")
    check_count(n)
    g = generator(seed, "one_longer", m)
    long_ = operands_with_digits(m, n, g)
    short = torch.randint(0, 10**task.digits, (n,), generator=g)
    first = torch.rand(n, generator=g) < 0.5
    return ordered(task, torch.where(first, long_, short), torch.where(first, short, long_))


def length_grid(task: Task, lengths: list[int], n_per_cell: int, seed: int = 0) -> dict[tuple[int, int], Pairs]:
    """A set per (len_a, len_b) cell of the grid ``lengths x lengths``."""
    return {(la, lb): ood_lengths(task, la, lb, n_per_cell, seed) for la in lengths for lb in lengths}


def random_pairs(
    task: Task, n: int, seed: int = 0, max_value: int | None = None, g: torch.Generator | None = None
) -> Pairs:
    """Uniform pairs in [0, max_value) (default 10^n: in distribution) that the task admits
    (a >= b for subtraction). Drawn from ``g`` when given (callers drawing several sets from one
    stream), else from a stream derived from ``seed``."""
    check_count(n)
    hi = 10**task.digits if max_value is None else max_value
    if not 1 <= hi <= 10**task.width:
        raise ValueError(f"max_value={hi} does not fit the format (operands below 10^{task.width})")
    g = generator(seed, "random_pairs") if g is None else g
    a, b = torch.randint(0, hi, (n,), generator=g), torch.randint(0, hi, (n,), generator=g)
    return ordered(task, a, b)


def class_members(task: Task, a: int, b: int, k: int = 3, seed: int = 0) -> tuple[Int[Tensor, " k"], Int[Tensor, " k"]]:
    """``k`` random OOD members ``(a + i·10^n, b + j·10^n)`` of the class of the ID pair ``(a, b)``,
    each with both operands longer than n digits, within the format's width."""
    N, W = 10**task.digits, task.width
    if not (0 <= a < N and 0 <= b < N):
        raise ValueError(f"({a}, {b}) is not an ID pair: both operands must be below 10^{task.digits}")
    require_ood_digits(task)
    g = generator(seed, "ood_class_members", a, b)
    i = torch.randint(1, 10**W // N, (k,), generator=g)
    j = torch.randint(1, 10**W // N, (k,), generator=g)
    return ordered(task, a + i * N, b + j * N)
