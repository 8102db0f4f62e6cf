"""Token positions and their names: where operand digit i and answer digit k sit, for every format.

Positions index the model's input (``task.n_ctx`` tokens: the prompt, then every answer token but the
last). Digit indices count places: 0 is the units digit. The answer digit ``k`` sits at
:func:`answer_token_pos` and is *predicted* by the logits at :func:`answer_logit_pos`, one earlier.
Positions are fixed only in padded formats; every function here raises a ValueError naming the
problem for unpadded ones.

Names (:func:`position_labels`): ``a2`` (a's hundreds digit), ``b0``, ``+``, ``=``, ``ans1``, and
``bos`` for the BOS token that ``bos=True`` tasks start with.

>>> from mechinterp_arith import Task
>>> task = Task("add", 3)                                 # paper format, width 5
>>> operand_pos(task, "b", 0), answer_token_pos(task, 0), answer_logit_pos(task, 0)
(9, 10, 9)
>>> position_labels(task)[:6], position_labels(task)[-2:]
(['a4', 'a3', 'a2', 'a1', 'a0', 'b4'], ['ans3', 'ans4'])
>>> plain = Task("add", 3, format="plain")               # 00349+00705=001054.
>>> answer_logit_pos(plain, 0), position_labels(plain)[5], position_labels(plain)[11]
(16, '+', '=')
>>> follow_up = Task("add", 3, format="reversed", bos=True)   # ^00349+00705=450100.
>>> position_labels(follow_up)[:3], operand_pos(follow_up, "b", 0), answer_logit_pos(follow_up, 0)
(['bos', 'a4', 'a3'], 11, 12)
"""

from __future__ import annotations

import re
from typing import NamedTuple

import torch
from jaxtyping import Int
from torch import Tensor

from .errors import NotApplicable
from .numbers import OperandsLike
from .tasks import Task

OPERANDS = ("a", "b")


def require_fixed_length(task: Task) -> None:
    """:class:`NotApplicable` unless the task's format has fixed token positions (analyses index them)."""
    if not task.fixed_length:
        raise NotApplicable(
            f"this analysis needs a fixed-length (padded) format; task {task.name} in format "
            f"{task.format!r} is unpadded (pad=False)"
        )


def check_digit(task: Task, k: int) -> int:
    """``k`` if it names an answer digit of the task (0 = units), else a ValueError."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < task.answer_width:
        raise ValueError(
            f"answer digit {k!r} is out of range: {task.name} answers have digits "
            f"0..{task.answer_width - 1} (0 = units)"
        )
    return k


def operand_pos(task: Task, operand: str, place: int) -> int:
    """Position of an operand's digit at ``place`` (0 = units), e.g. b's units at 9 in the paper format."""
    require_fixed_length(task)
    if operand not in OPERANDS:
        raise ValueError(f"operand must be 'a' or 'b', got {operand!r}")
    if isinstance(place, bool) or not isinstance(place, int) or not 0 <= place < task.width:
        raise ValueError(f"place {place!r} is out of range: the format holds {task.width} digits per operand")
    W = task.width
    start = int(task.bos) + (0 if operand == "a" else (W if task.format == "paper" else W + 1))
    return start + W - 1 - place


def answer_token_pos(task: Task, k: int) -> int:
    """Position of answer digit ``k`` in the full example (paper: ``prompt_len + k``)."""
    require_fixed_length(task)
    check_digit(task, k)
    return task.prompt_len + (k if task.answer_lsb_first else task.answer_width - 1 - k)


def answer_logit_pos(task: Task, k: int) -> int:
    """Position whose logits predict answer digit ``k`` (paper: ``prompt_len - 1 + k``)."""
    return answer_token_pos(task, k) - 1


def answer_positions(task: Task) -> list[int]:
    """The positions predicting answer digits 0, 1, ... (units first)."""
    return [answer_logit_pos(task, k) for k in range(task.answer_width)]


def predicted_digit(task: Task, position: int) -> int | None:
    """Which answer digit ``position`` predicts, or None for a position that predicts none."""
    positions = answer_positions(task)
    return positions.index(position) if position in positions else None


def write_answers(task: Task, tokens: Int[Tensor, "batch seq"], answers: OperandsLike) -> Int[Tensor, "batch seq"]:
    """A copy of full examples ``tokens`` whose answer tokens spell ``answers`` instead (teacher forcing
    another answer, e.g. the ID representative's); ValueError for an answer the format cannot hold.

    >>> task = Task("add", 3)
    >>> tokens, _ = task.encode_batch(torch.tensor([349]), torch.tensor([705]))
    >>> write_answers(task, tokens, torch.tensor([2054]))[0, task.prompt_len :].tolist()   # units first
    [4, 5, 0, 2, 0, 0]
    """
    require_fixed_length(task)
    digits = task.answer_digits(answers)  # units first
    if (digits < 0).any():
        raise ValueError(f"answers must lie in [0, 10^{task.answer_width}) to fit the format")
    out = tokens.clone()
    for k in range(task.answer_width):
        out[:, answer_token_pos(task, k)] = digits[:, k]
    return out


def position_labels(task: Task) -> list[str]:
    """A name per input position: ``a2`` (a's hundreds), ``b0``, ``+``, ``=``, ``ans1`` (answer digit 1),
    ``bos`` (the BOS token)."""
    require_fixed_length(task)
    labels = ["?"] * task.n_ctx
    for op in OPERANDS:
        for place in range(task.width):
            labels[operand_pos(task, op, place)] = f"{op}{place}"
    if task.bos:
        labels[0] = "bos"
    if task.format != "paper":
        labels[operand_pos(task, "a", 0) + 1] = task.symbol
        labels[operand_pos(task, "b", 0) + 1] = "="
    for k in range(task.answer_width):
        p = answer_token_pos(task, k)
        if p < task.n_ctx:
            labels[p] = f"ans{k}"
    return labels


def resolve_position(task: Task, position: int | str | None) -> int:
    """An input position from an int (negative counts from the end), a label of
    :func:`position_labels` (``"b0"``), ``"units"`` or ``"ans{k}"`` meaning the position that
    *predicts* answer digit k; None = ``"units"``. ValueError names a bad one."""
    require_fixed_length(task)
    if position is None:
        return answer_logit_pos(task, 0)
    if isinstance(position, str):
        s = position.strip()
        if s == "units":
            return answer_logit_pos(task, 0)
        m = re.fullmatch(r"ans(\d+)", s)
        if m:
            return answer_logit_pos(task, check_digit(task, int(m.group(1))))
        if re.fullmatch(r"-?\d+", s):
            position = int(s)
        elif s in position_labels(task):
            return position_labels(task).index(s)
        else:
            raise ValueError(
                f"unknown position {position!r}: use an index in [0, {task.n_ctx}), 'units', "
                f"'ans<k>' (predicts answer digit k) or a label such as 'a0' or 'b2'"
            )
    p = int(position)
    if not -task.n_ctx <= p < task.n_ctx:
        raise ValueError(f"position {p} is outside the model's input of {task.n_ctx} tokens (0..{task.n_ctx - 1})")
    return p % task.n_ctx


# ---- digit layout: which number each token's digit belongs to, and its place ----------------------
A_NUMBER, B_NUMBER, ANSWER_NUMBER = 0, 1, 2  # DigitLayout.number; -1: not a digit of a, b or the answer


class DigitLayout(NamedTuple):
    """Per input token: the number its digit belongs to and the digit's place; per row: operand lengths.

    The one description of the token layout that position schemes read (see
    :mod:`mechinterp_arith.core.position_schemes`); it holds for every format.
    """

    number: Int[Tensor, "batch pos"]  # 0 = a, 1 = b, 2 = the answer, -1 = not a digit (operator, '=', end)
    place: Int[Tensor, "batch pos"]  # the digit's place, 0 = units; -1 where number is -1
    length: Int[Tensor, "batch 2"]  # digits of a and of b without zero padding (0 has one digit)


def digit_layout(task: Task, tokens: Int[Tensor, "batch pos"]) -> DigitLayout:
    """The :class:`DigitLayout` of token rows (full examples or any prefix that holds the prompt).

    Padded formats place every digit at a fixed position (:func:`operand_pos`, :func:`answer_token_pos`);
    unpadded ones are read from the tokens: the first three digit runs are a, b and the answer,
    whose places count from the end of a run (operands) or from its start (a reversed answer).
    ValueError for an unpadded format that writes the answer most significant digit first: a
    digit's place is unknown there until the answer ends.

    >>> task = Task("add", 2, width=3)                    # paper format: 00349 style, width 3
    >>> lay = digit_layout(task, task.encode_batch([7], [45])[0][:, :-1])
    >>> lay.number.tolist(), lay.place.tolist(), lay.length.tolist()
    ([[0, 0, 0, 1, 1, 1, 2, 2, 2]], [[2, 1, 0, 2, 1, 0, 0, 1, 2]], [[1, 2]])
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    if task.fixed_length:
        number, place = _fixed_layout(task, tokens.shape[1], tokens.device)
        number, place = number.expand(len(tokens), -1), place.expand(len(tokens), -1)
    else:
        number, place = _run_layout(task, tokens)
    is_digit = (tokens >= 0) & (tokens <= 9)
    length = torch.stack([_significant_length(tokens, number, place, is_digit, n) for n in (A_NUMBER, B_NUMBER)], 1)
    return DigitLayout(number, place, length)


def _fixed_layout(task: Task, seq: int, device: torch.device) -> tuple[Tensor, Tensor]:
    number = torch.full((max(seq, task.seq_len),), -1, dtype=torch.long)
    place = torch.full_like(number, -1)
    for n, op in ((A_NUMBER, "a"), (B_NUMBER, "b")):
        for p in range(task.width):
            number[operand_pos(task, op, p)], place[operand_pos(task, op, p)] = n, p
    for k in range(task.answer_width):
        number[answer_token_pos(task, k)], place[answer_token_pos(task, k)] = ANSWER_NUMBER, k
    return number[:seq].unsqueeze(0).to(device), place[:seq].unsqueeze(0).to(device)


def _run_layout(task: Task, tokens: Tensor) -> tuple[Tensor, Tensor]:
    if not task.answer_lsb_first:
        raise ValueError(
            f"format {task.format!r} without padding writes the answer most significant digit "
            f"first: a digit's place is unknown until the answer ends; use 'reversed' or pad=True"
        )
    digit = (tokens >= 0) & (tokens <= 9)
    before = torch.cat([torch.zeros_like(digit[:, :1]), digit[:, :-1]], 1)
    run = torch.cumsum(digit & ~before, 1) - 1  # index of the digit run a token belongs to
    index = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    n_runs = int(run.max()) + 2 if tokens.numel() else 1
    slot = torch.where(digit, run, n_runs - 1).clamp(min=0)
    big = tokens.shape[1] + 1
    starts = torch.full((len(tokens), n_runs), big, device=tokens.device).scatter_reduce(1, slot, index, "amin")
    ends = torch.full((len(tokens), n_runs), -1, device=tokens.device).scatter_reduce(1, slot, index, "amax")
    start, end = starts.gather(1, slot), ends.gather(1, slot)
    number = torch.where(digit & (run <= ANSWER_NUMBER), run, -1)
    place = torch.where(number == ANSWER_NUMBER, index - start, end - index)
    return number, torch.where(number >= 0, place, -1)


def _significant_length(tokens: Tensor, number: Tensor, place: Tensor, is_digit: Tensor, which: int) -> Tensor:
    nonzero = (number == which) & is_digit & (tokens != 0)
    return torch.where(nonzero, place + 1, 1).amax(1) if tokens.shape[1] else torch.ones(len(tokens), dtype=torch.long)
