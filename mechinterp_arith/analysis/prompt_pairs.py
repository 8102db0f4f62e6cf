"""Clean/corrupted prompt pairs of equal token length (the inputs of activation patching).

Every generator returns :class:`PromptPairs`: operands, the model inputs (the full example minus
its last token, so the answer is teacher-forced) and the teacher-forced answer digits. Answer digit
``k`` (k = 0: units) is predicted by the logits at
:func:`~mechinterp_arith.core.positions.answer_logit_pos`; the metrics that score patched runs
live in :mod:`~mechinterp_arith.analysis.metrics`.

>>> from mechinterp_arith import Task
>>> task = Task("add", digits=3)
>>> pairs = change_operand_digit(task, n=4, operand="b", place=1, seed=0)
>>> pairs.clean_tokens.shape == pairs.corrupted_tokens.shape        # same length, always
True
>>> pairs = differ_in_answer_digit(task, k=3, n=4, seed=0)         # only the carry digit differs
>>> (pairs.clean_digits != pairs.corrupted_digits).sum(0).tolist()
[0, 0, 0, 4, 0, 0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from ..core import data
from ..core.errors import NotApplicable
from ..core.numbers import OperandsLike, Values, as_operands, digit_at, with_digit, with_digits
from ..core.positions import OPERANDS, check_digit, require_fixed_length, write_answers
from ..core.seeding import generator
from ..core.tasks import Task

MAX_ROUNDS = 200


@dataclass
class PromptPairs:
    """Clean and corrupted inputs of the same shape, with their teacher-forced answer digits."""

    task: Task
    clean_a: Values  # [n]
    clean_b: Values
    corrupted_a: Values
    corrupted_b: Values
    clean_tokens: Int[Tensor, "n ctx"]  # full example minus its last token
    corrupted_tokens: Int[Tensor, "n ctx"]
    clean_digits: Int[Tensor, "n answer"]  # teacher-forced answer digits, digit 0 = units
    corrupted_digits: Int[Tensor, "n answer"]
    description: str

    def __len__(self) -> int:
        return len(self.clean_a)

    def differing_positions(self) -> list[int]:
        """Input positions where any clean and corrupted row differ."""
        return torch.nonzero((self.clean_tokens != self.corrupted_tokens).any(0)).squeeze(1).tolist()

    def to(self, device: torch.device | str) -> PromptPairs:
        return PromptPairs(
            self.task,
            self.clean_a,
            self.clean_b,
            self.corrupted_a,
            self.corrupted_b,
            self.clean_tokens.to(device),
            self.corrupted_tokens.to(device),
            self.clean_digits.to(device),
            self.corrupted_digits.to(device),
            self.description,
        )


# ---- building pairs ---------------------------------------------------------------------------------
def _tokens(task: Task, a: Values, b: Values, answer: Values | None = None) -> Int[Tensor, "n ctx"]:
    tokens, _ = task.encode_batch(a, b)
    if answer is not None:  # teacher-force another answer (e.g. the ID representative's)
        tokens = write_answers(task, tokens, answer)
    return tokens[:, :-1]


def make_pairs(
    task: Task,
    clean_a: OperandsLike,
    clean_b: OperandsLike,
    corrupted_a: OperandsLike,
    corrupted_b: OperandsLike,
    description: str = "",
    clean_answer: OperandsLike | None = None,
    corrupted_answer: OperandsLike | None = None,
) -> PromptPairs:
    """Pairs from explicit operands; answers default to the true ones (teacher forcing)."""
    require_fixed_length(task)
    ca, cb, xa, xb = (as_operands(t) for t in (clean_a, clean_b, corrupted_a, corrupted_b))
    if not (ca.shape == cb.shape == xa.shape == xb.shape):
        raise ValueError("clean and corrupted operands must all have the same length")
    c_ans = task.apply(ca, cb) if clean_answer is None else as_operands(clean_answer)
    x_ans = task.apply(xa, xb) if corrupted_answer is None else as_operands(corrupted_answer)
    return PromptPairs(
        task,
        ca,
        cb,
        xa,
        xb,
        _tokens(task, ca, cb, c_ans),
        _tokens(task, xa, xb, x_ans),
        task.answer_digits(c_ans),
        task.answer_digits(x_ans),
        description,
    )


def change_operand_digit(
    task: Task,
    n: int = 64,
    operand: str = "b",
    place: int = 0,
    seed: int = 0,
    a: OperandsLike | None = None,
    b: OperandsLike | None = None,
) -> PromptPairs:
    """Corrupt one operand digit to a different random digit (ID operands unless ``a``/``b`` given)."""
    require_fixed_length(task)
    if operand not in OPERANDS:
        raise ValueError(f"operand must be 'a' or 'b', got {operand!r}")
    if not 0 <= place < task.digits:
        raise ValueError(f"place {place} is out of range for {task.digits}-digit operands (0..{task.digits - 1})")
    g = generator(seed, "change_operand_digit", operand, place)
    if a is None or b is None:
        a, b = data.random_pairs(task, n, g=g)
    a, b = as_operands(a), as_operands(b)
    x = a if operand == "a" else b
    old = digit_at(x, place)
    new = (old + torch.randint(1, 10, old.shape, generator=g)) % 10
    xa, xb = (with_digit(a, place, new), b) if operand == "a" else (a, with_digit(b, place, new))
    if task.op == "sub" and (xa < xb).any():
        keep = xa >= xb
        a, b, xa, xb = a[keep], b[keep], xa[keep], xb[keep]
    return make_pairs(task, a, b, xa, xb, f"{operand} digit {place} changed")


def differ_in_answer_digit(
    task: Task, k: int, n: int = 64, seed: int = 0, operand_digits: int | None = None
) -> PromptPairs:
    """ID pairs whose (true) answers differ in exactly answer digit ``k``.

    Corruptions change one operand digit, or the same place of both operands (needed for the
    carry digit of a sum); candidates are drawn until ``n`` qualify. ``operand_digits`` M: both
    operands of exactly M digits instead (M may exceed the trained length), corrupted at a place
    below M with a non-zero leading digit, so every input keeps its operands' lengths.
    """
    require_fixed_length(task)
    check_digit(task, k)
    if operand_digits is not None and not 1 <= operand_digits <= task.width:
        raise ValueError(f"operand_digits must be in 1..{task.width} (the format's width), got {operand_digits}")
    g = generator(seed, "differ_in_answer_digit", k)
    got: list[tuple[Values, ...]] = []
    have = 0
    for _ in range(MAX_ROUNDS):
        m = 4 * n
        if operand_digits is None:
            a, b = data.random_pairs(task, m, g=g)
            place = torch.randint(0, task.digits, (m,), generator=g)
        else:
            M = operand_digits
            a, b = data.ordered(task, *(with_digits(M, m, g) for _ in range(2)))
            place = torch.randint(0, M, (m,), generator=g)
        which = torch.randint(0, 3, (m,), generator=g)  # 0: a, 1: b, 2: both
        da = torch.randint(0, 10, (m,), generator=g)
        db = torch.randint(0, 10, (m,), generator=g)
        if operand_digits is not None and operand_digits > 1:  # the leading digit stays non-zero
            lead = place == operand_digits - 1
            da, db = torch.where(lead, 1 + da % 9, da), torch.where(lead, 1 + db % 9, db)
        xa = np.where((which != 1).numpy(), with_digit(a, place, da), a)
        xb = np.where((which != 0).numpy(), with_digit(b, place, db), b)
        ok = torch.from_numpy(np.ones(m, dtype=bool) if task.op != "sub" else xa >= xb)
        diff = task.answer_digits(task.apply(a, b)) != task.answer_digits(task.apply(xa, xb))
        only_k = diff[:, k] & (diff.sum(1) == 1) & ok
        idx = torch.nonzero(only_k).squeeze(1)[: n - have].numpy()
        got.append((a[idx], b[idx], xa[idx], xb[idx]))
        have += len(idx)
        if have >= n:
            break
    if have < n:
        values = task.answer_digits(task.apply(a, b))[:, k].unique().tolist()  # over the last draw of ID pairs
        why = f"it is always {values[0]} in distribution" if len(values) == 1 else "it rarely changes alone"
        operands = f"{task.digits}-digit ID" if operand_digits is None else f"{operand_digits}-digit"
        raise NotApplicable(
            f"answer digit {k} of {task.name} cannot be changed alone by edits of the "
            f"{operands} operands (found {have} of {n} pairs): {why}"
        )
    a, b, xa, xb = (np.concatenate(t) for t in zip(*got))
    lengths = "" if operand_digits is None else f" ({operand_digits}-digit operands)"
    return make_pairs(task, a, b, xa, xb, f"answers differ only in digit {k}{lengths}")


def carry_pairs(task: Task, k: int, n: int = 64, seed: int = 0) -> PromptPairs:
    """Addition pairs: the clean sum carries into digit ``k``, the corrupted one does not.

    Only a's digit at place ``k - 1`` changes, so the answers differ at digit ``k - 1`` and ``k``
    (and above where the carry ripples on).
    """
    require_fixed_length(task)
    if task.op not in ("add", "addmod"):
        raise ValueError(f"carry pairs are defined for addition, not {task.op!r}")
    if not 1 <= k <= task.digits:
        raise ValueError(f"carry into answer digit {k!r} needs 1 <= k <= {task.digits}")
    g = generator(seed, "carry_pairs", k)
    got, have = [], 0
    for _ in range(MAX_ROUNDS):
        a, b = data.random_pairs(task, 4 * n, g=g)
        xa = with_digit(a, k - 1, torch.randint(0, 10, a.shape, generator=g))
        P = 10**k
        carry = (a % P + b % P) >= P
        carry_x = (xa % P + b % P) >= P
        idx = np.nonzero(carry & ~carry_x)[0][: n - have]
        got.append((a[idx], b[idx], xa[idx], b[idx]))
        have += len(idx)
        if have >= n:
            break
    a, b, xa, xb = (np.concatenate(t) for t in zip(*got))
    return make_pairs(task, a, b, xa, xb, f"carry into digit {k} (clean) vs none (corrupted)")


def ood_id_pairs(task: Task, n: int = 64, m: int | None = None, seed: int = 0) -> PromptPairs:
    """Clean: the ID representative; corrupted: an OOD input with both operands exactly ``m`` digits.

    Both are teacher-forced with the ID representative's answer (the answer the study's models
    give to the OOD input), so the inputs differ only at the extra operand digits.
    """
    require_fixed_length(task)
    m = data.require_ood_digits(task, m)
    a, b = data.ood_both(task, m, n, seed=seed)
    ra, rb = task.id_representative(a, b)
    rep_answer = task.apply(ra, rb)
    return make_pairs(
        task,
        ra,
        rb,
        a,
        b,
        f"ID representative (clean) vs {m}-digit OOD input (corrupted)",
        clean_answer=rep_answer,
        corrupted_answer=rep_answer,
    )
