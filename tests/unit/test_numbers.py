"""Numbers of any size (issue 24): 25- and 100-digit operands, every answer compared with Python's own
integers, through tasks, token encoding and decoding, data sampling, labels and the relation search."""

import random

import numpy as np
import pytest
import torch

from mechinterp_arith import Task, data
from mechinterp_arith.analysis.equivalence import candidate_relations, find_relation
from mechinterp_arith.analysis.relation_by_length import relations_by_length
from mechinterp_arith.core.labels import label_values
from mechinterp_arith.core.numbers import (
    as_int64,
    as_operands,
    count_digits,
    digit_at,
    digit_count,
    digits_of,
    from_digits,
    uniform_in,
    with_digit,
    with_digits,
)
from mechinterp_arith.core.tasks import MAX_WIDTH

P30 = 10**30 + 57  # a modulus past int64 (the answer of a mod task has 31 digits)


def python_pairs(m: int, n: int, seed: int, sub: bool = False) -> tuple[list[int], list[int]]:
    """Pairs of exactly m-digit operands from Python's own random module (a >= b when ``sub``)."""
    r = random.Random(seed)
    a = [r.randrange(10 ** (m - 1), 10**m) for _ in range(n)]
    b = [r.randrange(10 ** (m - 1), 10**m) for _ in range(n)]
    if sub:
        a, b = [max(x, y) for x, y in zip(a, b)], [min(x, y) for x, y in zip(a, b)]
    return a, b


PYTHON = {
    "add": lambda a, b, p: a + b,
    "sub": lambda a, b, p: a - b,
    "mul": lambda a, b, p: a * b,
    "addmod": lambda a, b, p: (a + b) % p,
    "mulmod": lambda a, b, p: (a * b) % p,
}


@pytest.mark.parametrize("m", [25, 100])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "addmod", "mulmod"])
def test_every_operation_is_exact_at_25_and_100_digits(op, m):
    p = P30 if op.endswith("mod") else None
    task = Task(op, 3, width=m, modulus=p)
    a, b = python_pairs(m, 40, seed=m, sub=op == "sub")
    want = [PYTHON[op](x, y, p) for x, y in zip(a, b)]
    got = task.apply(a, b)
    assert got.tolist() == want and all(type(v) is int for v in got)
    assert task.answer_width == {"add": m + 1, "sub": m, "mul": 2 * m}.get(op, 31)  # p - 1 has 31 digits
    assert max(count_digits(v) for v in want) <= task.answer_width
    # the study's OOD rule on long inputs: the true answer of (a mod 10^3, b mod 10^3), a >= b kept for sub
    ra, rb = [x % 1000 for x in a], [y % 1000 for y in b]
    if op == "sub":
        ra, rb = [max(x, y) for x, y in zip(ra, rb)], [min(x, y) for x, y in zip(ra, rb)]
    assert task.equivalent_answer(a, b).tolist() == [PYTHON[op](x, y, p) for x, y in zip(ra, rb)]


FORMATS = [
    dict(format="paper"),
    dict(format="plain"),
    dict(format="reversed"),
    dict(format="plain", pad=False),
    dict(format="reversed", pad=False, bos=True),
    dict(format="reversed", bos=True),  # the follow-up's format
]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
@pytest.mark.parametrize("op", ["add", "sub", "mul", "addmod", "mulmod"])
def test_encoding_round_trips_at_25_and_100_digits(op, fmt):
    p = P30 if op.endswith("mod") else None
    for m in (25, 100):
        task = Task(op, 4, width=m, modulus=p, **fmt)
        a, b = python_pairs(m, 6, seed=m + 1, sub=op == "sub")
        a[0], b[0] = 10**m - 1, (10**m - 1 if op != "sub" else 1)  # the widest answer
        want = [PYTHON[op](x, y, p) for x, y in zip(a, b)]
        for x, y, c in zip(a, b, want):
            text = task.to_text(x, y)
            assert task.from_text(text) == (x, y, c)
            assert len(task.encode(x, y)) <= task.seq_len
        tokens, starts = task.encode_batch(a, b)
        if task.fixed_length:
            assert task.decode_answer(tokens[:, task.prompt_len :]).tolist() == want
        else:  # the digits between '=' and '.' read back as the answer
            for row, start, c in zip(tokens.tolist(), starts.tolist(), want):
                digits = "".join(task.vocab[t] for t in row[start : row.index(task.vocab.index("."), start)])
                assert int(digits[::-1] if task.answer_lsb_first else digits) == c


def test_digits_both_ways_and_digit_counts_agree_with_python_text():
    r = random.Random(0)
    values = [0, 7, 10**18 - 1, 10**18, 2**63, 10**99] + [r.randrange(10**m) for m in range(1, 120)]
    x = as_operands(values)
    for width in (5, 18, 19, 36, 100, 130):
        d = digits_of(x, width)
        assert d.tolist() == [[int(c) for c in str(v % 10**width).zfill(width)] for v in values]
        assert from_digits(d).tolist() == [v % 10**width for v in values]
    assert digit_count(x).tolist() == [len(str(v)) for v in values] == [count_digits(v) for v in values]
    assert digit_at(x, 17).tolist() == [v // 10**17 % 10 for v in values]
    places = torch.tensor([r.randrange(120) for _ in values])
    new = torch.tensor([r.randrange(10) for _ in values])
    replaced = with_digit(x, places, new).tolist()
    for v, p, d, got in zip(values, places.tolist(), new.tolist(), replaced):
        text = str(v).zfill(121)
        assert got == int(text[: 120 - p] + str(d) + text[121 - p :])


@pytest.mark.parametrize(
    "bad, message",
    [
        ([1.5], "operands must be integers, got 1.5"),
        ([True], "operands must be integers, got True"),
        ("349", "got the text '349'"),
        (torch.tensor([1.0]), "a tensor of torch.float32"),
        ([10**5000], r"100000000000\.\.\.000000000000 \(5001 digits\) is too wide"),
    ],
)
def test_bad_numbers_are_one_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        as_operands(bad)


def test_operand_errors_name_the_operand_and_its_length():
    task = Task("add", 3, width=25)
    with pytest.raises(ValueError, match=r"operand b=12345678901234567890123456 has 26 digits.*width=25"):
        task.encode_batch([1], [12345678901234567890123456])
    with pytest.raises(ValueError, match=r"subtraction needs a >= b, got a=1, b=10000000000000000000000"):
        Task("sub", 3, width=25).check_operands([1], [10**22])
    with pytest.raises(ValueError, match=f"width=1001 is too wide: a task holds operands of at most {MAX_WIDTH}"):
        Task("add", 3, width=1001)
    with pytest.raises(ValueError, match="needs a modulus between 2 and 10"):
        Task("addmod", 3, width=25, modulus=1)
    assert Task("mul", 3, width=500).answer_width == 1000  # the int64 caps (17 digits, 9 for products) are gone
    with pytest.raises(ValueError, match=r"label 'mod19'.*j <= 18"):
        label_values(Task("add", 3, width=25), [1], [2], "mod19")
    with pytest.raises(ValueError, match="does not fit int64"):
        as_int64(as_operands([2**63]))


@pytest.mark.parametrize("m", [25, 100])
def test_sampled_operands_have_exactly_m_digits_and_uniform_digits(m):
    task = Task("add", 3, width=m)
    n = 4000
    a, b = data.ood_both(task, m, n, seed=0)
    assert all(type(v) is int and len(str(v)) == m for v in np.concatenate([a, b]))
    digits = digits_of(a, m)  # [n, m], most significant first
    lead = torch.bincount(digits[:, 0], minlength=10)
    assert lead[0] == 0 and (lead[1:] - n / 9).abs().max() < 5 * (n / 9) ** 0.5  # 1..9, each 1/9
    counts = torch.stack([torch.bincount(digits[:, i], minlength=10) for i in range(1, m)]).double()  # [place, 10]
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum(1)  # per place: chi-square, 9 degrees of freedom
    assert chi2.max() < 35 and 4 < chi2.mean() < 14  # P(chi2_9 > 35) ~ 6e-5; its mean is 9
    again = data.ood_both(task, m, n, seed=0)
    assert np.array_equal(again[0], a) and not np.array_equal(data.ood_both(task, m, n, seed=1)[0], a)


def test_every_sampler_reaches_past_int64():
    task = Task("sub", 20, width=25)
    s = data.id_split(task, 300, 100, seed=0)  # 10^40 pairs: more than int64 indexes
    train = set(zip(s.train_a.tolist(), s.train_b.tolist()))
    assert len(train) == 300 and not train & set(zip(s.test_a.tolist(), s.test_b.tolist()))
    assert all(10**20 > x >= y >= 0 for x, y in train)
    assert np.array_equal(data.id_split(task, 300, 100, seed=0).test_a, s.test_a)
    mixed = data.id_split(Task("add", 20, width=25), 2000, 10, seed=0, lengths="mixed")
    lengths = [len(str(v)) for v in mixed.train_a]
    assert set(lengths) == set(range(1, 21)) and max(lengths.count(m) for m in range(1, 21)) < 2000 / 20 * 1.5
    a, b = data.ood_one_longer(task, 25, 500, seed=0)
    longer = np.maximum(a, b)
    assert all(len(str(v)) == 25 for v in longer) and (np.minimum(a, b) < 10**20).all() and (a >= b).all()
    a, b = data.random_pairs(task, 500, seed=0, max_value=10**25)
    assert (a < 10**25).all() and (a >= b).all() and (a >= 10**24).mean() > 0.8
    ma, mb = data.class_members(Task("add", 3, width=25), 349, 705, k=5)
    assert (ma % 1000 == 349).all() and (mb % 1000 == 705).all() and (ma >= 1000).all()
    (a, b), exhaustive = data.length_pairs(Task("add", 25, width=30), 25, 300, operands="either")
    assert not exhaustive and all(len(str(v)) == 25 for v in np.maximum(a, b))
    a, b = data.length_set_pairs(Task("add", 25, width=25), "either", [24, 25], 400)
    assert sorted(len(str(max(x, y))) for x, y in zip(a, b)) == [24] * 200 + [25] * 200
    v = with_digits(40, 1000, torch.Generator().manual_seed(0))
    assert all(len(str(x)) == 40 for x in v) and len(set(v.tolist())) == 1000


def test_draws_that_fit_int64_are_torch_randint_draws():
    """The sets of every checkpoint trained so far stay what they were (operands that fit int64)."""
    for low, high in ((0, 1000), (10**17, 10**18), (1, 2**62)):
        ours = uniform_in(low, high, 50, torch.Generator().manual_seed(3)).tolist()
        assert ours == torch.randint(low, high, (50,), generator=torch.Generator().manual_seed(3)).tolist()


def test_labels_of_25_digit_operands():
    task = Task("add", 3, width=25)
    a, b = python_pairs(25, 30, seed=4)
    s = [x + y for x, y in zip(a, b)]
    assert label_values(task, a, b, "a24").tolist() == [int(str(x)[0]) for x in a]
    assert label_values(task, a, b, "ans25").tolist() == [x // 10**25 for x in s]
    assert label_values(task, a, b, "carry20").tolist() == [(x % 10**20 + y % 10**20) // 10**20 for x, y in zip(a, b)]
    assert label_values(task, a, b, "mod18").tolist() == [x % 10**18 for x in s]
    mul = Task("mul", 3, width=25)
    low = [
        sum(int(str(x)[-1 - i]) * int(str(y)[-1 - j]) * 10 ** (i + j) for i in range(3) for j in range(3 - i))
        for x, y in zip(a, b)
    ]
    assert label_values(mul, a, b, "carry3").tolist() == [v // 1000 for v in low]


def test_relation_search_on_20_digit_inputs_names_the_planted_truncation():
    """(a mod 10^4) + (b mod 10^4) on 20-digit operands, 5% of answers off by one: the search names it with
    exactly 95% coverage, and every candidate's value is Python's."""
    task = Task("add", 4, width=20)
    a, b = python_pairs(20, 2000, seed=5)
    planted = [x % 10**4 + y % 10**4 + (i < 100) for i, (x, y) in enumerate(zip(a, b))]
    s = find_relation(task, a, b, planted)
    assert (
        s.fits and s.best.name == "(a mod 10^4) + (b mod 10^4)" and s.best.hits == 1900 and s.n_counterexamples == 100
    )
    assert s.counterexamples["a"].tolist() == a[:100] and s.counterexamples["true"].tolist()[:3] == [
        x + y for x, y in zip(a[:3], b[:3])
    ]
    for c in candidate_relations(task, a[:50], b[:50]):
        j = c.j
        want = {
            "true": [x + y for x, y in zip(a[:50], b[:50])],
            "truncated": [x % 10**j + y % 10**j for x, y in zip(a[:50], b[:50])] if j else None,
            "true_mod": [(x + y) % 10**j for x, y in zip(a[:50], b[:50])] if j else None,
        }[c.kind]
        assert c.values.tolist() == want, c.name
    assert len(candidate_relations(task, a[:2], b[:2])) == 1 + 20 + 21


def test_relation_by_length_of_a_planted_relation_at_25_digits():
    task = Task("add", 4, width=25)
    table = relations_by_length(task, lambda a, b: a % 10**4 + b % 10**4, lengths=[3, 4, 20, 25], n=400, seed=0)
    assert (table["truncated"] == 1.0).all() and table.loc[[3, 4], "exact"].tolist() == [1.0, 1.0]
    assert table.loc[[20, 25], "exact"].max() < 0.02 and table.loc[25, "best"] == "(a mod 10^4) + (b mod 10^4)"


def test_spread_lengths_keeps_short_ranges_whole():
    assert data.spread_lengths(4, 9) == [4, 5, 6, 7, 8, 9] and data.spread_lengths(1, 10) == list(range(1, 11))
    assert (
        data.spread_lengths(5, 100)
        == [round(5 + 95 * i / 9) for i in range(10)]
        == [5, 16, 26, 37, 47, 58, 68, 79, 89, 100]
    )
