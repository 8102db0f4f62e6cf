"""Token positions and their names: where operand digit i and answer digit k sit, for every format.

Positions index the model's input (``task.n_ctx`` tokens: the prompt, then every answer token but the
last). Digit indices count places: 0 is the units digit. The answer digit ``k`` sits at
:func:`answer_token_pos` and is *predicted* by the logits at :func:`answer_logit_pos`, one earlier.
Positions are fixed only in padded formats; every function here raises a ValueError naming the
problem for unpadded ones.

Names (:func:`position_labels`): ``a2`` (a's hundreds digit), ``b0``, ``+``, ``=``, ``ans1``.

>>> from mechinterp_arith import Task
>>> task = Task("add", 3)                                 # paper format, width 5
>>> operand_pos(task, "b", 0), answer_token_pos(task, 0), answer_logit_pos(task, 0)
(9, 10, 9)
>>> position_labels(task)[:6], position_labels(task)[-2:]
(['a4', 'a3', 'a2', 'a1', 'a0', 'b4'], ['ans3', 'ans4'])
>>> plain = Task("add", 3, format="plain")               # 00349+00705=001054.
>>> answer_logit_pos(plain, 0), position_labels(plain)[5], position_labels(plain)[11]
(16, '+', '=')
"""

from __future__ import annotations

import re

from .errors import NotApplicable
from .tasks import Task

OPERANDS = ("a", "b")


def require_fixed_length(task: Task) -> None:
    """:class:`NotApplicable` unless the task's format has fixed token positions (analyses index them)."""
    if not task.fixed_length:
        raise NotApplicable(f"this analysis needs a fixed-length (padded) format; task {task.name} in format "
                         f"{task.format!r} is unpadded (pad=False)")


def check_digit(task: Task, k: int) -> int:
    """``k`` if it names an answer digit of the task (0 = units), else a ValueError."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < task.answer_width:
        raise ValueError(f"answer digit {k!r} is out of range: {task.name} answers have digits "
                         f"0..{task.answer_width - 1} (0 = units)")
    return k


def operand_pos(task: Task, operand: str, place: int) -> int:
    """Position of an operand's digit at ``place`` (0 = units), e.g. b's units at 9 in the paper format."""
    require_fixed_length(task)
    if operand not in OPERANDS:
        raise ValueError(f"operand must be 'a' or 'b', got {operand!r}")
    if isinstance(place, bool) or not isinstance(place, int) or not 0 <= place < task.width:
        raise ValueError(f"place {place!r} is out of range: the format holds {task.width} digits per operand")
    W = task.width
    start = 0 if operand == "a" else (W if task.format == "paper" else W + 1)
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


def position_labels(task: Task) -> list[str]:
    """A name per input position: ``a2`` (a's hundreds), ``b0``, ``+``, ``=``, ``ans1`` (answer digit 1)."""
    require_fixed_length(task)
    labels = ["?"] * task.n_ctx
    for op in OPERANDS:
        for place in range(task.width):
            labels[operand_pos(task, op, place)] = f"{op}{place}"
    if task.format != "paper":
        labels[task.width] = task.symbol
        labels[2 * task.width + 1] = "="
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
            raise ValueError(f"unknown position {position!r}: use an index in [0, {task.n_ctx}), 'units', "
                             f"'ans<k>' (predicts answer digit k) or a label such as 'a0' or 'b2'")
    p = int(position)
    if not -task.n_ctx <= p < task.n_ctx:
        raise ValueError(f"position {p} is outside the model's input of {task.n_ctx} tokens (0..{task.n_ctx - 1})")
    return p % task.n_ctx
