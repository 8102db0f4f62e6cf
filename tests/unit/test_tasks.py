import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mechinterp_arith import Task
from mechinterp_arith.core.numbers import digits_of

TASKS = [
    Task("add", 3),
    Task("sub", 3),
    Task("mul", 3),
    Task("addmod", 2, modulus=101),
    Task("mulmod", 2, modulus=97),
    Task("add", 3, format="plain"),
    Task("add", 3, format="reversed"),
    Task("mul", 2, format="plain", pad=False),
    Task("sub", 4, format="reversed", pad=False),
    Task("add", 2, width=3),
    Task("add", 4, format="reversed", width=9, bos=True),  # the follow-up's format (docs/follow_up.md)
    Task("mulmod", 3, format="reversed", width=5, modulus=51, bos=True),
    Task("sub", 3, format="plain", pad=False, bos=True),
]


@settings(max_examples=60, deadline=None)
@given(task=st.sampled_from(TASKS), a=st.integers(0, 99999), b=st.integers(0, 99999))
def test_text_round_trip(task, a, b):
    a, b = a % 10**task.width, b % 10**task.width
    if task.op == "sub":
        a, b = max(a, b), min(a, b)
    text = task.to_text(a, b)
    assert task.from_text(text) == (a, b, int(task.apply(torch.tensor(a), torch.tensor(b))))
    tokens = task.encode(a, b)
    assert "".join(task.vocab[t] for t in tokens) == text
    assert max(tokens) < task.d_vocab


@settings(max_examples=40, deadline=None)
@given(task=st.sampled_from([t for t in TASKS if t.pad]), a=st.lists(st.integers(0, 99999), min_size=1, max_size=8))
def test_batch_encoding_decodes_to_true_answers(task, a):
    a = torch.tensor(a) % 10**task.width
    b = a.flip(0)
    if task.op == "sub":
        a, b = torch.maximum(a, b), torch.minimum(a, b)
    tokens, starts = task.encode_batch(a, b)
    assert tokens.shape == (len(a), task.seq_len)
    assert (starts == task.prompt_len).all()
    answer = tokens[:, task.prompt_len : task.prompt_len + task.answer_width]
    assert np.array_equal(task.decode_answer(answer), task.apply(a, b))


def test_paper_layout_matches_the_study():
    # 349 + 705 -> 00349 00705 450100 (reference README)
    assert Task("add", 3).to_text(349, 705) == "0034900705450100"
    assert Task("mul", 3).to_text(349, 705) == "0034900705" + str(349 * 705).zfill(10)[::-1]
    task = Task("add", 3)
    assert (task.prompt_len, task.answer_width, task.n_ctx, task.d_vocab) == (10, 6, 15, 10)


def test_the_follow_up_format_has_a_bos_token_and_the_answer_reversed():
    """The follow-up writes '<bos>' + a, b zero-padded + '=' + the answer zero-padded and reversed + ';'
    (their ';' is our '.', their <bos> our '^'; docs/follow_up.md)."""
    task = Task("add", 4, format="reversed", width=9, bos=True)
    assert task.to_text(1349, 705) == "^000001349+000000705=4502000000."
    assert (task.prompt_len, task.answer_width, task.seq_len, task.n_ctx, task.d_vocab) == (21, 10, 32, 31, 16)
    assert task.encode(1349, 705)[0] == 15 and task.vocab[15] == "^"
    loose = Task("add", 4, format="reversed", width=9, bos=True, pad=False)
    assert loose.to_text(1349, 705) == "^1349+705=4502." and loose.from_text("^1349+705=4502.") == (1349, 705, 2054)
    tokens, starts = loose.encode_batch(torch.tensor([1349, 7]), torch.tensor([705, 5]))
    assert starts.tolist() == [10, 5] and tokens.shape == (2, loose.seq_len)
    assert Task("add", 3, format="reversed").d_vocab == 15  # no BOS: the vocabulary of earlier checkpoints
    assert Task.from_dict({"op": "add", "digits": 3}) == Task("add", 3)  # configs written before bos existed


def test_modular_answers():
    assert (
        Task("addmod", 2, modulus=101).from_text(Task("addmod", 2, modulus=101).to_text(99, 98))[2] == (99 + 98) % 101
    )
    assert Task("addmod", 2, modulus=100).answer_width == 2


@pytest.mark.parametrize(
    "task, a, b, message",
    [
        (Task("add", 3), 123456, 1, "has 6 digits"),
        (Task("add", 3), -4, 1, "negative"),
        (Task("sub", 3), 3, 5, "a >= b"),
        (Task("add", 3, format="plain", pad=False), 10**5, 0, "has 6 digits"),
    ],
)
def test_bad_operands_raise_naming_the_problem(task, a, b, message):
    with pytest.raises(ValueError, match=message):
        task.encode(a, b)


@pytest.mark.parametrize(
    "task, text, message",
    [
        (Task("add", 3), "00349x0705450100", "only digits"),
        (Task("add", 3), "003490070545010", "expected 16 digits"),
        (Task("add", 3, format="plain"), "349+705=1054.", "zero-padded"),
        (Task("add", 3, format="plain", pad=False), "349*705=1054.", "expected a\\+b=c"),
        (Task("add", 3, format="plain", pad=False), "1234567+1=1234568.", "has 7 digits"),
        (Task("add", 3, format="reversed", bos=True), "00349+00705=450100.", "\\^ \\(the BOS token\\) then"),
        (Task("add", 3, format="reversed"), "^00349+00705=450100.", "expected a\\+b=c"),
    ],
)
def test_malformed_text_raises_naming_the_problem(task, text, message):
    with pytest.raises(ValueError, match=message):
        task.from_text(text)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(op="pow"), "unknown operation"),
        (dict(op="add", format="latex"), "unknown format"),
        (dict(op="addmod"), "needs a modulus"),
        (dict(op="add", digits=6), "between 1 and width"),
        (dict(op="add", format="paper", pad=False), "always zero-padded"),
        (dict(op="add", format="paper", bos=True), "bos=True needs 'plain' or 'reversed'"),
    ],
)
def test_bad_task_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


def test_a_task_read_from_json_takes_bos_as_true_or_false():
    with pytest.raises(ValueError, match="bos must be true or false"):
        Task.from_dict({"op": "add", "format": "reversed", "bos": 1})


def test_digits_of():
    assert digits_of(torch.tensor([349, 7]), 5).tolist() == [[0, 0, 3, 4, 9], [0, 0, 0, 0, 7]]
