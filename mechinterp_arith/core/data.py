"""Operand sets: in-distribution train/test splits and out-of-distribution sets.

Every set is a pair of :data:`~mechinterp_arith.core.numbers.Values` ``(a, b)`` (numpy arrays of Python
ints: operands of any length) and is a pure function of its arguments and seed. Draws use the same
random streams at every size: a set of operands that fit int64 is what it was when operands were int64
tensors (the shipped checkpoints' splits are kept), wider operands are drawn 18 digits at a time.

>>> from mechinterp_arith import Task
>>> split = id_split(Task("add", digits=3), seed=0)      # 10,000 train + 10,000 test pairs
>>> len(split.train_a), len(split.test_a)
(10000, 10000)
>>> a, b = ood_both(Task("add", digits=3), m=4, n=1000, seed=0)   # both operands exactly 4 digits
>>> bool(((a >= 1000) & (a < 10000)).all())
True
>>> a, b = ood_both(Task("add", digits=3, width=100), m=100, n=10)   # 100-digit operands
>>> {len(str(x)) for x in a}
{100}
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from .choices import MAX_SAMPLES
from .errors import NotApplicable
from .numbers import OperandsLike, Values, as_operands, digit_count, uniform_in, with_digits
from .seeding import generator, rng
from .tasks import Task

Pairs = tuple[Values, Values]


@dataclass(frozen=True)
class Split:
    """Disjoint ID train and test operand pairs."""

    train_a: Values  # [n_train]
    train_b: Values
    test_a: Values  # [n_test]
    test_b: Values

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


def default_split_sizes(task: Task, total: int | None = None) -> tuple[int, int]:
    """The study's 10,000 + 10,000, shrunk to 80% / 20% of the pairs when fewer than 20,000 exist
    (``total``: how many the training set draws from; default all n-digit pairs)."""
    total = id_pair_count(task) if total is None else total
    if total >= 20_000:
        return 10_000, 10_000
    n_train = int(total * 0.8)
    return n_train, total - n_train


def id_split(
    task: Task, n_train: int | None = None, n_test: int | None = None, seed: int = 0, lengths: str = "uniform"
) -> Split:
    """Train and test pairs drawn without replacement from the ID pairs: disjoint by construction.

    ``lengths`` (:func:`check_operand_lengths`): "uniform" draws from all n-digit pairs uniformly
    (most operands then have n digits); "mixed" draws each operand's digit count uniformly from
    1..n first (:func:`mixed_length_pairs`); "either", "both" and their ranges ("either:4-5") draw
    the follow-up's sets (:func:`length_set_pairs`).
    """
    kind, shortest = operand_length_set(task, lengths)
    total = id_pair_count(task) if shortest is None else length_set_size(task, kind, range(shortest, task.digits + 1))
    d_train, d_test = default_split_sizes(task, total)
    n_train = d_train if n_train is None else n_train
    n_test = d_test if n_test is None else n_test
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if n_train + n_test > total:
        raise ValueError(f"{task.name} has only {total} operand pairs; asked for {n_train} + {n_test}")
    if kind != "uniform":
        if kind == "mixed":
            a, b = mixed_length_pairs(task, n_train + n_test, seed)
        else:
            assert shortest is not None  # operand_length_set: either/both sets have a shortest length
            a, b = length_set_pairs(task, kind, range(shortest, task.digits + 1), n_train + n_test, seed)
        return Split(a[:n_train], b[:n_train], a[n_train:], b[n_train:])
    if total < 2**63:
        # rng(seed) is numpy's default_rng(seed): the split of the shipped checkpoints, kept as it was
        index = rng(seed).choice(total, size=n_train + n_test, replace=False)
        a, b = map(as_operands, _pair_from_index(task, torch.from_numpy(index.astype(np.int64))))
    else:  # more pairs than int64 indexes (n >= 10 digits): uniform draws, repeats dropped
        draw: Callable[[int, torch.Generator], Pairs] = lambda missing, g: random_pairs(task, 2 * missing + 16, g=g)
        a, b = _distinct_pairs(n_train + n_test, draw, generator(seed, "id_pairs"))
    return Split(a[:n_train], b[:n_train], a[n_train:], b[n_train:])


def _distinct_pairs(
    n: int, draw: Callable[[int, torch.Generator], Pairs], g: torch.Generator, what: str = "pairs"
) -> Pairs:
    """The first ``n`` distinct pairs of rounds of ``draw(missing, g)`` (``missing``: how many are still
    needed), in the order drawn."""
    seen: dict[tuple[int, int], None] = {}
    for _ in range(MIXED_DRAW_ROUNDS):
        a, b = draw(n - len(seen), g)
        seen.update(dict.fromkeys(zip(a.tolist(), b.tolist())))
        if len(seen) >= n:
            pairs = list(itertools.islice(seen, n))
            return as_operands([p[0] for p in pairs]), as_operands([p[1] for p in pairs])
    raise ValueError(f"could not draw {n:,} distinct {what}; ask for fewer")


def _pair_from_index(task: Task, index: Int[Tensor, " n"]) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"]]:
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
        a, b = map(as_operands, _pair_from_index(task, torch.arange(total)))
        cell = digit_count(a) * (task.digits + 1) + digit_count(b)
        cell_size = torch.bincount(cell)[cell].double()
        keys = torch.rand(total, generator=g, dtype=torch.float64).log() * cell_size  # log(U) / weight
        chosen = keys.topk(n).indices.numpy()
        return a[chosen], b[chosen]

    def draw(missing: int, g: torch.Generator) -> Pairs:  # 2n draws a round, whatever is missing
        lengths = torch.randint(1, task.digits + 1, (2, 2 * n), generator=g)
        return ordered(task, _values_with_lengths(lengths[0], g), _values_with_lengths(lengths[1], g))

    return _distinct_pairs(n, draw, g, f"mixed-length pairs of {task.name}")


FLOAT_DRAW_DIGITS = 15  # a float64 in [0, 1) scales to operands of at most 15 digits without gaps


def _values_with_lengths(lengths: Int[Tensor, " n"], g: torch.Generator) -> Values:
    """An operand of exactly ``lengths[i]`` digits for each i: scaled float64 draws up to
    ``FLOAT_DRAW_DIGITS`` digits (the sets trained on so far), else :func:`with_digits` per length."""
    if int(lengths.max()) <= FLOAT_DRAW_DIGITS:
        lo = torch.where(lengths == 1, 0, 10 ** (lengths - 1))
        return as_operands(
            lo + (torch.rand(len(lengths), generator=g, dtype=torch.float64) * (10**lengths - lo)).long()
        )
    out = np.zeros(len(lengths), dtype=object)
    for length in lengths.unique().tolist():
        rows = torch.nonzero(lengths == length).squeeze(1).numpy()
        out[rows] = with_digits(length, len(rows), g)
    return out


def ordered(task: Task, a: OperandsLike, b: OperandsLike) -> Pairs:
    """The pairs the task admits from raw draws: ``a >= b`` (swapped where needed) for subtraction."""
    a, b = as_operands(a), as_operands(b)
    if task.op == "sub":
        return np.maximum(a, b), np.minimum(a, b)
    return a, b


def check_count(n: int, name: str = "n") -> int:
    """``n`` if it is a usable sample size (1 .. 10^8), else a ValueError naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"{name} must be an integer between 1 and {MAX_SAMPLES:,}, got {n!r}")
    return n


def default_ood_digits(task: Task) -> int | None:
    """The study's OOD operand length, n + 1, when the format holds it; else None."""
    return task.digits + 1 if task.digits < task.width else None


def in_distribution(task: Task, a: OperandsLike, b: OperandsLike) -> Bool[np.ndarray, " batch"]:
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


def check_ood_digits(task: Task, ood_digits: Iterable[int], wider: bool = False) -> list[int]:
    """Validate OOD operand lengths: each m must satisfy n < m <= W (ValueError naming the bad one);
    ``wider``: m may exceed W (read in a wider format: ``core/widening.py`` checks what the weights hold)."""
    ms = [int(m) for m in ood_digits]
    if not ms:
        raise ValueError("give at least one OOD operand length (--ood-digits)")
    for m in ms:
        if m <= task.digits:
            raise ValueError(f"OOD length m={m} must exceed the trained length n={task.digits} (m > n)")
        if m > task.width and not wider:
            raise ValueError(f"OOD length m={m} does not fit the format: width W={task.width} digits at most")
    return ms


MAX_SPREAD = 10  # lengths scored by default on wide formats (the report's grid, length profiles)


def spread_lengths(first: int, last: int, most: int = MAX_SPREAD) -> list[int]:
    """The operand lengths ``first..last``, or ``most`` of them evenly spaced (both ends kept) when
    there are more: what the report and :func:`~mechinterp_arith.analysis.length_generalisation.length_profile`
    score by default, so a 100-digit format costs 10 lengths, not 100.

    >>> spread_lengths(4, 6), spread_lengths(1, 100, most=5)
    ([4, 5, 6], [1, 26, 50, 75, 100])
    """
    if last - first < most:
        return list(range(first, last + 1))
    return sorted({first + round(i * (last - first) / (most - 1)) for i in range(most)})


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
    a = with_digits(len_a, n, g)
    b = with_digits(len_b, n, g)
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
    long_ = with_digits(m, n, g)
    short = uniform_in(0, 10**task.digits, n, g)
    first = (torch.rand(n, generator=g) < 0.5).numpy()
    return ordered(task, np.where(first, long_, short), np.where(first, short, long_))


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
    a, b = uniform_in(0, hi, n, g), uniform_in(0, hi, n, g)
    return ordered(task, a, b)


def class_members(task: Task, a: int, b: int, k: int = 3, seed: int = 0) -> Pairs:
    """``k`` random OOD members ``(a + i·10^n, b + j·10^n)`` of the class of the ID pair ``(a, b)``,
    each with both operands longer than n digits, within the format's width."""
    N, W = 10**task.digits, task.width
    if not (0 <= a < N and 0 <= b < N):
        raise ValueError(f"({a}, {b}) is not an ID pair: both operands must be below 10^{task.digits}")
    require_ood_digits(task)
    g = generator(seed, "ood_class_members", a, b)
    i = uniform_in(1, 10**W // N, k, g)
    j = uniform_in(1, 10**W // N, k, g)
    return ordered(task, a + i * N, b + j * N)


# ---- the follow-up's operand-length sets (docs/follow_up.md) ------------------------------------------
OPERAND_LENGTH_KINDS = ("uniform", "mixed", "either", "both")


def check_operand_lengths(spec: str) -> str:
    """``spec`` if it names operand lengths, else a ValueError: ``uniform``, ``mixed``, ``either``,
    ``both``, or ``either:L-N`` / ``both:L-N`` (lengths L..N, N the trained length; ``either:N``).

    >>> check_operand_lengths("either:4-5")
    'either:4-5'
    """
    kind, _, lengths = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if kind not in OPERAND_LENGTH_KINDS or (lengths and kind in ("uniform", "mixed")):
        raise ValueError(
            f"unknown operand lengths {spec!r}; choose uniform, mixed, either, both, or either:L-N / both:L-N "
            f"(e.g. either:4-5: lengths 4 and 5)"
        )
    if lengths:
        _length_range(spec, lengths)
    return spec


def _length_range(spec: str, lengths: str) -> tuple[int, int]:
    low, _, high = lengths.partition("-")
    if not (low.isdigit() and (high.isdigit() or not high)):
        raise ValueError(f"malformed operand lengths {spec!r}: expected KIND:L-N, e.g. either:4-5")
    low_, high_ = int(low), int(high or low)
    if not 1 <= low_ <= high_:
        raise ValueError(f"operand lengths {spec!r}: need 1 <= L <= N, got L={low_}, N={high_}")
    return low_, high_


def operand_length_set(task: Task, spec: str) -> tuple[str, int | None]:
    """``(kind, shortest)`` of an operand-lengths spec for ``task``: the shortest length of an
    ``either``/``both`` set (its longest is ``task.digits``), None for ``uniform`` and ``mixed``.
    ValueError when the range does not end at the task's trained length."""
    check_operand_lengths(spec)
    kind, _, lengths = spec.partition(":")
    if kind in ("uniform", "mixed"):
        return kind, None
    low, high = _length_range(spec, lengths) if lengths else (task.digits, task.digits)
    if high != task.digits:
        raise ValueError(
            f"operand lengths {spec!r} reach {high} digits but {task.name} is trained on digits={task.digits}: "
            f"the longest length must be the task's (--digits {high})"
        )
    return kind, low


def length_set_size(task: Task, kind: str, lengths: Iterable[int]) -> int:
    """How many distinct pairs the ``kind`` sets of these lengths hold: ``either``, the longer operand
    has exactly L digits (the other any below 10^L); ``both``, both have exactly L (0-9 count as one
    digit); a >= b for subtraction.

    >>> length_set_size(Task("add", 2), "either", [2]), length_set_size(Task("add", 2), "both", [1, 2])
    (9900, 8200)
    """

    def pairs(x: int) -> int:  # ordered pairs below x (a >= b for subtraction)
        return x * (x + 1) // 2 if task.op == "sub" else x * x

    total = 0
    for L in lengths:
        low = 0 if L == 1 else 10 ** (L - 1)
        total += pairs(10**L) - pairs(low) if kind == "either" else pairs(10**L - low)
    return total


def _draw_length_set(task: Task, kind: str, L: int, k: int, g: torch.Generator) -> Pairs:
    """``k`` draws of the follow-up's generator of the length-L set (with repeats)."""
    long_ = with_digits(L, k, g)
    if kind == "both":
        return ordered(task, long_, with_digits(L, k, g))
    other = uniform_in(0, 10**L, k, g)
    first = (torch.rand(k, generator=g) < 0.5).numpy()  # which operand has exactly L digits: a coin flip
    return ordered(task, np.where(first, long_, other), np.where(first, other, long_))


def _all_of_length_set(task: Task, kind: str, L: int) -> Pairs:
    axis = torch.arange(10**L)
    a, b = axis.repeat_interleave(len(axis)), axis.repeat(len(axis))
    low = 0 if L == 1 else 10 ** (L - 1)
    keep = ((a >= low) | (b >= low)) if kind == "either" else ((a >= low) & (b >= low))
    if task.op == "sub":
        keep &= a >= b
    return as_operands(a[keep]), as_operands(b[keep])


def length_set_pairs(task: Task, kind: str, lengths: Iterable[int], n: int, seed: int = 0) -> Pairs:
    """``n`` distinct pairs from the ``kind`` sets of these operand lengths in equal shares, shuffled
    (the follow-up's training sets: ``either`` L is its "either a or b is an L-digit number", each
    draw giving one operand, by a coin flip, exactly L digits and the other any below 10^L; ``both``
    its "both a and b are L-digit numbers"). A share larger than its set takes the whole set and
    passes the rest to the other lengths. Within a set, pairs are drawn with repeats dropped (in
    draw order), as their files de-duplicate lines.

    >>> a, b = length_set_pairs(Task("add", 4), "either", [4], 1000)
    >>> bool((np.maximum(a, b) >= 1000).all()), round(float(((a >= 1000) & (b >= 1000)).mean()), 1)
    (True, 0.9)
    """
    check_count(n)
    lengths = sorted(set(lengths))
    if kind not in ("either", "both") or not lengths or not 1 <= lengths[0] <= lengths[-1] <= task.width:
        raise ValueError(f"need kind either or both and lengths within 1..{task.width}, got {kind!r}, {lengths}")
    sizes = {L: length_set_size(task, kind, [L]) for L in lengths}
    if n > sum(sizes.values()):
        raise ValueError(f"the {kind} sets of lengths {lengths} hold {sum(sizes.values()):,} pairs; asked for {n:,}")
    g = generator(seed, "length_sets", kind, *lengths)
    parts, left = [], n
    for i, L in enumerate(sorted(lengths, key=lambda x: sizes[x])):  # small sets first: they pass on the rest
        share = min(sizes[L], left // (len(lengths) - i))
        whole = share == sizes[L] <= ENUMERATE_LIMIT
        if whole:
            parts.append(_all_of_length_set(task, kind, L))
        else:
            draw = lambda missing, g, L=L: _draw_length_set(task, kind, L, 2 * missing + 16, g)
            parts.append(_distinct_pairs(share, draw, g, f"{kind} pairs of length {L}"))
        left -= share
    a, b = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    order = torch.randperm(len(a), generator=g).numpy()
    return a[order], b[order]


def length_pairs(task: Task, m: int, n: int, seed: int = 0, operands: str = "both") -> tuple[Pairs, bool]:
    """An evaluation set of operand length ``m``: ``((a, b), exhaustive)``. ``operands`` "both": both
    have exactly m digits (:func:`ood_lengths`; 0-9 count as one digit); "either": the longer has
    exactly m (the follow-up's addition and multiplication test sets). Every pair of the set, in
    order, when it holds at most ``n`` (``exhaustive`` True: e.g. all 100 one-digit pairs, 55 for
    subtraction); else ``n`` draws with repeats.

    >>> (a, b), exhaustive = length_pairs(Task("add", 2), 1, 1000)
    >>> len(a), exhaustive
    (100, True)
    """
    if operands not in ("both", "either"):
        raise ValueError(f"operands must be 'both' or 'either', got {operands!r}")
    if not 1 <= m <= task.width:
        raise ValueError(f"length m={m} does not fit the format (1..{task.width} digits)")
    check_count(n)
    if length_set_size(task, operands, [m]) <= min(n, ENUMERATE_LIMIT):
        return _all_of_length_set(task, operands, m), True
    if operands == "both":
        return ood_lengths(task, m, m, n, seed), False
    return _draw_length_set(task, "either", m, n, generator(seed, "length_pairs", "either", m)), False
