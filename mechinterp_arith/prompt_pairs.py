"""Clean/corrupted prompt pairs of equal token length, and the metrics patching reads off them.

Every generator returns :class:`PromptPairs`: operands, the model inputs (the full example minus
its last token, so the answer is teacher-forced) and the teacher-forced answer digits. Answer digit
``k`` (k = 0: units) is predicted by the logits at :func:`answer_logit_pos` (``prompt_len - 1 + k``
in the paper format).

>>> from mechinterp_arith import Task
>>> task = Task("add", digits=3)
>>> pairs = change_operand_digit(task, n=4, operand="b", place=1, seed=0)
>>> pairs.clean_tokens.shape == pairs.corrupted_tokens.shape        # same length, always
True
>>> pairs = differ_in_answer_digit(task, k=3, n=4, seed=0)         # only the carry digit differs
>>> (pairs.clean_digits != pairs.corrupted_digits).sum(0).tolist()
[0, 0, 0, 4, 0, 0]
>>> metric = logit_diff_metric(pairs, k=3)     # TL-style: logits [batch, pos, vocab] -> scalar
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .patching import reads_positions
from .tasks import Task, _as_long, digits_of

OPERANDS = ("a", "b")
MAX_ROUNDS = 200


@dataclass
class PromptPairs:
    """Clean and corrupted inputs of the same shape, with their teacher-forced answer digits."""

    task: Task
    clean_a: Int[Tensor, "n"]
    clean_b: Int[Tensor, "n"]
    corrupted_a: Int[Tensor, "n"]
    corrupted_b: Int[Tensor, "n"]
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

    def to(self, device) -> "PromptPairs":
        return PromptPairs(self.task, self.clean_a, self.clean_b, self.corrupted_a, self.corrupted_b,
                           self.clean_tokens.to(device), self.corrupted_tokens.to(device),
                           self.clean_digits.to(device), self.corrupted_digits.to(device), self.description)


# ---- positions ------------------------------------------------------------------------------------
def _require_fixed(task: Task) -> None:
    if not task.fixed_length:
        raise ValueError(f"prompt pairs need a fixed-length (padded) format; task {task.name} has pad=False")


def check_digit(task: Task, k: int) -> int:
    """Validate an answer digit index (0 = units)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < task.answer_width:
        raise ValueError(f"answer digit {k!r} is out of range: {task.name} answers have digits 0..{task.answer_width - 1} (0 = units)")
    return k


def answer_token_pos(task: Task, k: int) -> int:
    """Position of answer digit ``k`` in the full example (paper: ``prompt_len + k``)."""
    check_digit(task, k)
    return task.prompt_len + (k if task.answer_lsb_first else task.answer_width - 1 - k)


def answer_logit_pos(task: Task, k: int) -> int:
    """Position whose logits predict answer digit ``k`` (paper: ``prompt_len - 1 + k``)."""
    return answer_token_pos(task, k) - 1


def operand_pos(task: Task, operand: str, place: int) -> int:
    """Position of an operand's digit at ``place`` (0 = units), e.g. b's units at 9 in the paper format."""
    _require_fixed(task)
    if operand not in OPERANDS:
        raise ValueError(f"operand must be 'a' or 'b', got {operand!r}")
    if not 0 <= place < task.width:
        raise ValueError(f"place {place} is out of range: the format holds {task.width} digits per operand")
    W = task.width
    start = 0 if operand == "a" else (W if task.format == "paper" else W + 1)
    return start + W - 1 - place


def position_labels(task: Task) -> list[str]:
    """A label per input position: ``a2`` (a's hundreds), ``b0``, ``+``, ``=``, ``ans1`` (answer digit 1)..."""
    _require_fixed(task)
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


# ---- building pairs ---------------------------------------------------------------------------------
def _answer_digits(task: Task, c: Tensor) -> Tensor:
    return digits_of(c, task.answer_width).flip(-1)  # units first


def _tokens(task: Task, a: Tensor, b: Tensor, answer: Tensor | None = None) -> Tensor:
    tokens, _ = task.encode_batch(a, b)
    if answer is not None:  # teacher-force another answer (e.g. the ID representative's)
        digits = _answer_digits(task, answer)
        if not task.answer_lsb_first:
            digits = digits.flip(-1)
        tokens[:, task.prompt_len : task.prompt_len + task.answer_width] = digits
    return tokens[:, :-1]


def make_pairs(task: Task, clean_a, clean_b, corrupted_a, corrupted_b, description: str = "",
               clean_answer=None, corrupted_answer=None) -> PromptPairs:
    """Pairs from explicit operands; answers default to the true ones (teacher forcing)."""
    _require_fixed(task)
    ca, cb, xa, xb = (_as_long(t) for t in (clean_a, clean_b, corrupted_a, corrupted_b))
    if not (ca.shape == cb.shape == xa.shape == xb.shape):
        raise ValueError("clean and corrupted operands must all have the same length")
    c_ans = task.apply(ca, cb) if clean_answer is None else _as_long(clean_answer)
    x_ans = task.apply(xa, xb) if corrupted_answer is None else _as_long(corrupted_answer)
    return PromptPairs(task, ca, cb, xa, xb, _tokens(task, ca, cb, c_ans), _tokens(task, xa, xb, x_ans),
                       _answer_digits(task, c_ans), _answer_digits(task, x_ans), description)


def _set_digit(x: Tensor, place: int | Tensor, digit: Tensor) -> Tensor:
    p = 10 ** torch.as_tensor(place, dtype=torch.long)
    return x - ((x // p) % 10) * p + digit * p


def _random_id(task: Task, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    N = 10**task.digits
    a, b = torch.randint(0, N, (n,), generator=g), torch.randint(0, N, (n,), generator=g)
    if task.op == "sub":
        a, b = torch.maximum(a, b), torch.minimum(a, b)
    return a, b


def change_operand_digit(task: Task, n: int = 64, operand: str = "b", place: int = 0, seed: int = 0,
                         a=None, b=None) -> PromptPairs:
    """Corrupt one operand digit to a different random digit (ID operands unless ``a``/``b`` given)."""
    _require_fixed(task)
    if operand not in OPERANDS:
        raise ValueError(f"operand must be 'a' or 'b', got {operand!r}")
    if not 0 <= place < task.digits:
        raise ValueError(f"place {place} is out of range for {task.digits}-digit operands (0..{task.digits - 1})")
    g = torch.Generator().manual_seed(seed)
    if a is None or b is None:
        a, b = _random_id(task, n, g)
    a, b = _as_long(a), _as_long(b)
    x = a if operand == "a" else b
    old = (x // 10**place) % 10
    new = (old + torch.randint(1, 10, old.shape, generator=g)) % 10
    xa, xb = (_set_digit(a, place, new), b) if operand == "a" else (a, _set_digit(b, place, new))
    if task.op == "sub" and (xa < xb).any():
        keep = xa >= xb
        a, b, xa, xb = a[keep], b[keep], xa[keep], xb[keep]
    return make_pairs(task, a, b, xa, xb, f"{operand} digit {place} changed")


def differ_in_answer_digit(task: Task, k: int, n: int = 64, seed: int = 0) -> PromptPairs:
    """ID pairs whose (true) answers differ in exactly answer digit ``k``.

    Corruptions change one operand digit, or the same place of both operands (needed for the
    carry digit of a sum); candidates are drawn until ``n`` qualify.
    """
    _require_fixed(task)
    check_digit(task, k)
    g = torch.Generator().manual_seed(seed * 7919 + k)
    got: list[tuple[Tensor, ...]] = []
    have = 0
    for _ in range(MAX_ROUNDS):
        m = 4 * n
        a, b = _random_id(task, m, g)
        place = torch.randint(0, task.digits, (m,), generator=g)
        which = torch.randint(0, 3, (m,), generator=g)  # 0: a, 1: b, 2: both
        da = torch.randint(0, 10, (m,), generator=g)
        db = torch.randint(0, 10, (m,), generator=g)
        xa = torch.where(which != 1, _set_digit(a, place, da), a)
        xb = torch.where(which != 0, _set_digit(b, place, db), b)
        ok = torch.ones(m, dtype=torch.bool) if task.op != "sub" else xa >= xb
        diff = _answer_digits(task, task.apply(a, b)) != _answer_digits(task, task.apply(xa, xb))
        only_k = diff[:, k] & (diff.sum(1) == 1) & ok
        idx = torch.nonzero(only_k).squeeze(1)[: n - have]
        got.append((a[idx], b[idx], xa[idx], xb[idx]))
        have += len(idx)
        if have >= n:
            break
    if have < n:
        raise ValueError(f"answer digit {k} of {task.name} cannot be changed alone by ID operand edits "
                         f"(found {have} of {n} pairs); for a sum of {task.digits}-digit operands it is "
                         f"{'always 0' if k > task.digits else 'rarely isolated'}")
    a, b, xa, xb = (torch.cat(t) for t in zip(*got))
    return make_pairs(task, a, b, xa, xb, f"answers differ only in digit {k}")


def carry_pairs(task: Task, k: int, n: int = 64, seed: int = 0) -> PromptPairs:
    """Addition pairs: the clean sum carries into digit ``k``, the corrupted one does not.

    Only a's digit at place ``k - 1`` changes, so the answers differ at digit ``k - 1`` and ``k``
    (and above where the carry ripples on).
    """
    _require_fixed(task)
    if task.op not in ("add", "addmod"):
        raise ValueError(f"carry pairs are defined for addition, not {task.op!r}")
    if not 1 <= k <= task.digits:
        raise ValueError(f"carry into answer digit {k!r} needs 1 <= k <= {task.digits}")
    g = torch.Generator().manual_seed(seed * 104729 + k)
    got, have = [], 0
    for _ in range(MAX_ROUNDS):
        a, b = _random_id(task, 4 * n, g)
        xa = _set_digit(a, k - 1, torch.randint(0, 10, a.shape, generator=g))
        P = 10**k
        carry = (a % P + b % P) >= P
        carry_x = (xa % P + b % P) >= P
        idx = torch.nonzero(carry & ~carry_x).squeeze(1)[: n - have]
        got.append((a[idx], b[idx], xa[idx], b[idx]))
        have += len(idx)
        if have >= n:
            break
    a, b, xa, xb = (torch.cat(t) for t in zip(*got))
    return make_pairs(task, a, b, xa, xb, f"carry into digit {k} (clean) vs none (corrupted)")


def id_representative(task: Task, a, b) -> tuple[Tensor, Tensor]:
    """``(a mod 10^n, b mod 10^n)``: the ID input whose answer an OOD input gets (:meth:`Task.id_representative`)."""
    return task.id_representative(a, b)


def ood_id_pairs(task: Task, n: int = 64, m: int | None = None, seed: int = 0) -> PromptPairs:
    """Clean: the ID representative; corrupted: an OOD input with both operands exactly ``m`` digits.

    Both are teacher-forced with the ID representative's answer (the answer the study's models
    give to the OOD input), so the inputs differ only at the extra operand digits.
    """
    from .data import ood_both

    _require_fixed(task)
    m = task.digits + 1 if m is None else m
    if not task.digits < m <= task.width:
        raise ValueError(f"OOD operands need {task.digits} < m <= {task.width} digits, got m={m}")
    a, b = ood_both(task, m, n, seed=seed)
    ra, rb = id_representative(task, a, b)
    rep_answer = task.apply(ra, rb)
    return make_pairs(task, ra, rb, a, b, f"ID representative (clean) vs {m}-digit OOD input (corrupted)",
                      clean_answer=rep_answer, corrupted_answer=rep_answer)


# ---- metrics ---------------------------------------------------------------------------------------
def logit_diff_metric(pairs: PromptPairs, k: int, per_example: bool = False) -> Callable[[Tensor], Tensor]:
    """logit(clean digit k) - logit(corrupted digit k) at answer position k, mean over the batch.

    Declares that it reads only that position (:func:`~mechinterp_arith.patching.reads_positions`).

    >>> metric(logits)    # logits [batch, pos, vocab] -> scalar (or [batch] with per_example)
    """
    pos = answer_logit_pos(pairs.task, k)
    clean = pairs.clean_digits[:, k].view(-1, 1)
    corr = pairs.corrupted_digits[:, k].view(-1, 1)
    if not (clean != corr).any():
        raise ValueError(f"no pair differs in answer digit {k}: the logit difference would be 0 everywhere")

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Tensor:
        lg = logits[:, pos]
        d = lg.gather(1, clean.to(lg.device)) - lg.gather(1, corr.to(lg.device))
        return d.squeeze(1) if per_example else d.mean()

    return reads_positions(metric, [pos])


def correct_prob_metric(pairs: PromptPairs, k: int, per_example: bool = False) -> Callable[[Tensor], Tensor]:
    """Probability of the clean answer digit k at answer position k (mean over the batch); declares
    that it reads only that position."""
    pos = answer_logit_pos(pairs.task, k)
    clean = pairs.clean_digits[:, k].view(-1, 1)

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Tensor:
        p = logits[:, pos].softmax(-1).gather(1, clean.to(logits.device)).squeeze(1)
        return p if per_example else p.mean()

    return reads_positions(metric, [pos])


def normalised_effect(patched: Tensor, clean_value: float | Tensor, corrupted_value: float | Tensor) -> Tensor:
    """``(patched - corrupted) / (clean - corrupted)``: 0 = no effect, 1 = the clean metric restored."""
    clean_value = torch.as_tensor(clean_value, dtype=patched.dtype)
    corrupted_value = torch.as_tensor(corrupted_value, dtype=patched.dtype)
    scale = clean_value - corrupted_value
    if bool((scale == 0).any()):
        raise ValueError("clean and corrupted metrics are equal: the normalised effect is undefined")
    return (patched - corrupted_value) / scale
