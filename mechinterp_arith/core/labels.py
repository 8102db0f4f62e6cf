"""Labels of operand pairs to colour and separate representations by.

A label is a short spec evaluated on ``(a, b)``; digit indices count places (0 = units):

``a{i}``, ``b{i}``  digit i of an operand            ``ans{k}`` (``units`` = ``ans0``)  digit k of the result
``carry{k}``        carry into place k (k >= 1; add: 0/1, sub: the borrow, mul: the carry value)
``mod{j}``          the result mod 10^j

>>> from mechinterp_arith import Task
>>> task = Task("add", 3)
>>> a, b = [349, 999], [705, 1]
>>> label_values(task, a, b, "units").tolist(), label_values(task, a, b, "carry1").tolist()
([4, 0], [1, 1])
>>> label_values(task, a, b, "mod2").tolist(), label_values(task, a, b, "a2").tolist()
([54, 0], [3, 9])
"""

from __future__ import annotations

import re

import numpy as np
from jaxtyping import Int
from torch import Tensor

from .choices import DEFAULT_LABEL as DEFAULT_LABEL  # re-exported: labels are documented here
from .choices import LABEL_HELP
from .numbers import LIMB, OperandsLike, Values, as_int64, as_operands, digit_at, low_digits
from .tasks import Task


def parse_label(task: Task, spec: str) -> tuple[str, int]:
    """``(kind, index)`` of a label spec; ValueError names an unknown or out-of-range one."""
    s = str(spec).strip()
    if s == "units":
        return "ans", 0
    m = re.fullmatch(r"(a|b|ans|carry|mod)(\d+)", s)
    if not m:
        raise ValueError(f"unknown label {spec!r}; use {LABEL_HELP}")
    kind, i = m.group(1), int(m.group(2))
    A, W = task.answer_width, task.width
    limits = {"a": (0, W - 1), "b": (0, W - 1), "ans": (0, A - 1), "carry": (1, A - 1), "mod": (1, A)}
    lo, hi = limits[kind]
    if not lo <= i <= hi:
        raise ValueError(f"label {spec!r} is out of range for {task.name}: {kind}<i> needs {lo} <= i <= {hi}")
    if kind == "carry" and task.op not in ("add", "sub", "mul"):
        raise ValueError(f"label {spec!r}: carries are defined for add, sub and mul, not {task.op}")
    if kind == "mod" and i > LIMB:
        raise ValueError(f"label {spec!r}: a label is a class of at most 10^{LIMB} values (mod<j>, j <= {LIMB})")
    return kind, i


def label_values(task: Task, a: OperandsLike, b: OperandsLike, spec: str) -> Int[Tensor, " batch"]:
    """The label of each pair (an int64 tensor; operands of any size)."""
    return as_int64(_label(task, as_operands(a), as_operands(b), *parse_label(task, spec)), f"label {spec}")


def _label(task: Task, a: Values, b: Values, kind: str, i: int) -> Values | Int[Tensor, " _n"]:
    if kind == "a":
        return digit_at(a, i)
    if kind == "b":
        return digit_at(b, i)
    c = task.apply(a, b)
    if kind == "ans":
        return digit_at(c, i)
    if kind == "mod":
        return low_digits(c, i)
    # carry into place i
    p, la, lb = 10**i, low_digits(a, i), low_digits(b, i)
    if task.op == "add":
        return (la + lb) // p
    if task.op == "sub":
        return (la < lb).astype(np.int64)
    low = np.zeros(len(a), dtype=object)  # mul: the partial products a_s b_t 10^(s+t) with s + t < i
    for s in range(i):
        for t in range(i - s):
            low = low + as_operands(digit_at(a, s) * digit_at(b, t)) * 10 ** (s + t)  # exact past int64
    return low // p
