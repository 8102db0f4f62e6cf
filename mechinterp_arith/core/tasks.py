"""Arithmetic tasks: which operation, on how many digits, in which token format.

A :class:`Task` is the single description every other module reads: it computes true answers,
encodes operand pairs into token sequences and decodes them back.

>>> task = Task("add", digits=3)                      # the study's setting, `paper` format
>>> task.to_text(349, 705)
'0034900705450100'
>>> task.from_text('0034900705450100')
(349, 705, 1054)
>>> Task("add", digits=3, format="plain", pad=False).to_text(349, 705)
'349+705=1054.'
>>> Task("add", digits=4, format="reversed", width=9, bos=True).to_text(1349, 705)   # the follow-up's
'^000001349+000000705=4502000000.'

Formats
-------
``paper``    digits only: a and b zero-padded to ``width`` digits, then the answer zero-padded to
             ``answer_width`` digits and written least-significant digit first (the layout of the
             study's released code). Vocabulary: the 10 digits.
``plain``    ``a+b=c.``: operator and ``=`` tokens, answer most-significant digit first, ``.`` ends it.
``reversed`` as ``plain`` with the answer's digits reversed.
``plain`` and ``reversed`` zero-pad operands and answer when ``pad=True`` (fixed length).

``bos=True`` (``plain``, ``reversed``) starts every example with a BOS token, written ``^``: with
``reversed`` and padding it is the follow-up's format (Xu et al., arXiv 2407.17963; docs/follow_up.md).

Numbers of any size: operands and answers are numpy arrays of Python ints (``core/numbers.py``), so
a 25-digit task computes exactly what Python computes:

>>> a, b = 10**24 + 349, 9 * 10**24 + 705
>>> Task("add", digits=25, width=25).apply([a], [b])[0] == a + b
True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Int, Shaped
from torch import Tensor

from .choices import FORMATS, OPERATIONS
from .numbers import MAX_DIGITS, OperandsLike, Values, as_operands, count_digits, digits_of, from_digits, show
from .typecheck import check_values

Operation = Literal["add", "sub", "mul", "addmod", "mulmod"]
Format = Literal["paper", "plain", "reversed"]

OPERATOR_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "addmod": "+", "mulmod": "*"}
SYMBOLS = "0123456789+-*=."  # token id = index; `paper` uses only the first 10
EQUALS, END = SYMBOLS.index("="), SYMBOLS.index(".")
BOS_SYMBOL = "^"  # the BOS token of ``bos=True`` tasks: token id len(SYMBOLS)
BOS = len(SYMBOLS)
MAX_WIDTH = MAX_DIGITS // 4  # 1,000 digits: a product's 2,000 stay within Python's int/text limit


@dataclass(frozen=True)
class Task:
    """An n-digit arithmetic task in one token format.

    Args:
        op: "add", "sub" (a >= b), "mul", "addmod" or "mulmod" ((a op b) mod ``modulus``).
        digits: n, the operand length the model is trained on (operands in [0, 10^n)).
        format: "paper", "plain" or "reversed".
        width: W, the widest operand the format holds (default 5, as in the study).
        modulus: p for the modular operations.
        pad: zero-pad operands and answer in "plain"/"reversed" (always on for "paper").
        bos: start every example with a BOS token ("plain"/"reversed"; the follow-up's format).
    """

    op: str = "add"
    digits: int = 3
    format: str = "paper"
    width: int = 5
    modulus: int | None = None
    pad: bool = True
    bos: bool = False

    def __post_init__(self) -> None:
        for name in ("digits", "width") + (("modulus",) if self.modulus is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("pad", "bos"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown operation {self.op!r}; choose one of {', '.join(OPERATIONS)}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if not 1 <= self.digits <= self.width:
            raise ValueError(f"digits={self.digits} must be between 1 and width={self.width}")
        if self.width > MAX_WIDTH:
            raise ValueError(f"width={self.width} is too wide: a task holds operands of at most {MAX_WIDTH} digits")
        if self.op.endswith("mod"):
            if self.modulus is None or not 2 <= self.modulus <= 10**MAX_WIDTH:
                got = self.modulus if self.modulus is None else show(self.modulus)
                raise ValueError(f"operation {self.op!r} needs a modulus between 2 and 10^{MAX_WIDTH}, got {got}")
        elif self.modulus is not None:
            raise ValueError(f"operation {self.op!r} takes no modulus (got {self.modulus})")
        if self.format == "paper" and not self.pad:
            raise ValueError("the 'paper' format is always zero-padded; pad=False needs 'plain' or 'reversed'")
        if self.format == "paper" and self.bos:
            raise ValueError("the 'paper' format is digits only; bos=True needs 'plain' or 'reversed'")

    # ---- description -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Short name, e.g. ``add3`` or ``addmod2_p101``."""
        base = f"{self.op}{self.digits}"
        return f"{base}_p{self.modulus}" if self.modulus is not None else base

    @property
    def symbol(self) -> str:
        return OPERATOR_SYMBOL[self.op]

    def describe(self, a: str = "a", b: str = "b") -> str:
        """Human-readable formula, e.g. ``(a + b) mod 101``."""
        expr = f"{a} {'·' if self.symbol == '*' else self.symbol} {b}"
        return f"({expr}) mod {self.modulus}" if self.modulus is not None else expr

    @property
    def answer_width(self) -> int:
        """Digits of the widest answer: W+1 for a sum, 2W for a product, digits of p-1 mod p."""
        if self.op == "add":
            return self.width + 1
        if self.op == "sub":
            return self.width
        if self.op == "mul":
            return 2 * self.width
        assert self.modulus is not None  # __post_init__: the modular operations have one
        return count_digits(self.modulus - 1)

    @property
    def vocab(self) -> str:
        """The token symbols, token id = index: digits, ``+-*=.``, then ``^`` (BOS) when ``bos``."""
        return SYMBOLS[:10] if self.format == "paper" else SYMBOLS + (BOS_SYMBOL if self.bos else "")

    @property
    def d_vocab(self) -> int:
        return len(self.vocab)

    @property
    def fixed_length(self) -> bool:
        return self.pad

    @property
    def has_end_token(self) -> bool:
        """Whether an example ends with the end token ``.`` (every format but ``paper``)."""
        return self.format != "paper"

    @property
    def prompt_len(self) -> int:
        """Tokens before the first answer token (fixed-length formats; the longest otherwise)."""
        return 2 * self.width if self.format == "paper" else 2 * self.width + 2 + self.bos

    @property
    def seq_len(self) -> int:
        """Full example length (the longest, for unpadded formats)."""
        return self.prompt_len + self.answer_width + self.has_end_token

    @property
    def n_ctx(self) -> int:
        """Context the model needs: the last token is never an input."""
        return self.seq_len - 1

    @property
    def answer_lsb_first(self) -> bool:
        return self.format in ("paper", "reversed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        """The task of a ``to_dict()`` mapping; ValueError names an unknown key or a bad value."""
        if not isinstance(d, dict):
            raise ValueError(f"a task is a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown task keys: {', '.join(unknown)}")
        check_values(cls, d)
        return cls(**d)

    # ---- arithmetic --------------------------------------------------------------------------
    def apply(self, a: OperandsLike, b: OperandsLike) -> Values | Shaped[np.ndarray, ""]:
        """The true answer of ``a op b`` elementwise, exact at any size (:data:`~.numbers.Values`: numpy
        arrays of Python ints; ints, sequences and integer tensors are converted; two scalars give a
        0-d array, as two 0-d tensors gave a 0-d tensor)."""
        scalar = np.ndim(a) == 0 and np.ndim(b) == 0
        a, b = as_operands(a), as_operands(b)
        if self.op in ("add", "addmod"):
            c = a + b
        elif self.op == "sub":
            c = a - b
        else:
            c = a * b
        if self.modulus is not None:
            c = c % self.modulus
        return c.reshape(()) if scalar else c

    def id_representative(self, a: OperandsLike, b: OperandsLike, j: int | None = None) -> tuple[Values, Values]:
        """The ID input an OOD pair is equivalent to: ``(a mod 10^n, b mod 10^n)`` (a >= b kept for sub);
        with ``j``, the truncation at 10^j instead (the relation candidates of other places).

        >>> [x.tolist() for x in Task("add", 3).id_representative([1349], [705])]
        [[349], [705]]
        """
        N = 10 ** (self.digits if j is None else j)
        ra, rb = as_operands(a) % N, as_operands(b) % N
        if self.op == "sub":
            ra, rb = np.maximum(ra, rb), np.minimum(ra, rb)
        return ra, rb

    def equivalent_answer(self, a: OperandsLike, b: OperandsLike, j: int | None = None) -> Values:
        """The study's OOD rule: the true answer of the ID representative, e.g. 1349+705 -> 349+705
        (with ``j``: of the truncation at 10^j, the relation :meth:`equivalent_description` ``(j)`` names).

        >>> Task("add", 3).equivalent_answer([1349], [705]).tolist()
        [1054]
        >>> Task("sub", 3).equivalent_answer([1300], [1200]).tolist()   # 300 - 200
        [100]
        """
        return self.apply(*self.id_representative(a, b, j))

    def equivalent_description(self, j: int | None = None) -> str:
        """The OOD rule as text: ``(a mod 10^3) + (b mod 10^3)``, or with ``j`` the truncation at 10^j.

        >>> Task("addmod", 2, modulus=101).equivalent_description()
        '((a mod 10^2) + (b mod 10^2)) mod 101'
        >>> Task("sub", 3).equivalent_description(2)
        '|(a mod 10^2) - (b mod 10^2)|'
        """
        j = self.digits if j is None else j
        if self.op == "sub":  # the representative keeps a >= b: the larger residue minus the smaller
            return f"|(a mod 10^{j}) - (b mod 10^{j})|"
        return self.describe(f"(a mod 10^{j})", f"(b mod 10^{j})")

    def answer_digits(self, values: OperandsLike) -> Int[Tensor, "batch answer_width"]:
        """Digits of integer answers, units first, ``answer_width`` of them; a row of -1 for a value no
        answer can hold (negative, e.g. an unreadable output, or too wide), so it matches no digit.

        >>> Task("add", 3).answer_digits([1054, -1]).tolist()
        [[4, 5, 0, 1, 0, 0], [-1, -1, -1, -1, -1, -1]]
        """
        values = as_operands(values)
        A = self.answer_width
        ok = (values >= 0) & (values < 10**A)
        d = digits_of(np.where(ok, values, 0), A).flip(-1)
        return torch.where(torch.from_numpy(ok).unsqueeze(1), d, torch.full_like(d, -1))

    def check_operands(self, a: OperandsLike, b: OperandsLike) -> None:
        """Raise ValueError naming the first operand the format cannot hold."""
        a, b = as_operands(a), as_operands(b)
        limit = 10**self.width
        for name, x in (("a", a), ("b", b)):
            if len(x) == 0:
                continue
            if (x < 0).any():
                bad = x[x < 0][0]
                raise ValueError(f"operand {name}={show(bad)} is negative; operands must be >= 0")
            if (x >= limit).any():
                bad = x[x >= limit][0]
                raise ValueError(
                    f"operand {name}={show(bad)} has {count_digits(bad)} digits; format {self.format!r} "
                    f"holds at most width={self.width}"
                )
        if self.op == "sub" and (a < b).any():
            i = int(np.nonzero(a < b)[0][0])
            raise ValueError(f"subtraction needs a >= b, got a={show(a[i])}, b={show(b[i])}")

    # ---- encoding ----------------------------------------------------------------------------
    def encode(self, a: int, b: int) -> list[int]:
        """Token ids of one full example (prompt and answer)."""
        tokens, _ = self.encode_batch(as_operands([a]), as_operands([b]))
        if not self.pad:
            end = tokens[0].tolist().index(END) + 1
            return tokens[0, :end].tolist()
        return tokens[0].tolist()

    def to_text(self, a: int, b: int) -> str:
        """The example as text, e.g. ``'0034900705450100'`` or ``'349+705=1054.'``."""
        return "".join(self.vocab[t] for t in self.encode(a, b))

    def encode_batch(self, a: OperandsLike, b: OperandsLike) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, " batch"]]:
        """Encode operand pairs.

        Returns ``(tokens, answer_start)``: tokens [batch, seq] (unpadded formats are right-filled
        with the end token up to ``seq_len``) and the index of each row's first answer token.
        """
        a, b = as_operands(a), as_operands(b)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"a and b must be 1-D and of equal length, got {tuple(a.shape)} and {tuple(b.shape)}")
        self.check_operands(a, b)
        c = self.apply(a, b)
        W, A = self.width, self.answer_width
        if self.pad:
            ans = digits_of(c, A)
            if self.answer_lsb_first:
                ans = ans.flip(-1)
            if self.format == "paper":
                tokens = torch.cat([digits_of(a, W), digits_of(b, W), ans], dim=1)
            else:
                col: Callable[[int], Tensor] = lambda t: torch.full((len(a), 1), t, dtype=torch.long)
                op = col(SYMBOLS.index(self.symbol))
                tokens = torch.cat([digits_of(a, W), op, digits_of(b, W), col(EQUALS), ans, col(END)], dim=1)
                if self.bos:
                    tokens = torch.cat([col(BOS), tokens], dim=1)
            return tokens, torch.full((len(a),), self.prompt_len, dtype=torch.long)
        # unpadded plain / reversed: variable length, one row at a time (text-sized inputs)
        rows, starts = [], []
        for x, y, z in zip(a.tolist(), b.tolist(), c.tolist()):
            answer = str(z)[::-1] if self.answer_lsb_first else str(z)
            text = f"{BOS_SYMBOL if self.bos else ''}{x}{self.symbol}{y}={answer}."
            rows.append([self.vocab.index(ch) for ch in text])
            starts.append(text.index("=") + 1)
        tokens = torch.full((len(rows), self.seq_len), END, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r)
        return tokens, torch.tensor(starts, dtype=torch.long)

    def decode_answer(self, answer_tokens: Int[Tensor, "batch ans"]) -> Values:
        """Integers from generated answer tokens (fixed-length formats; first ``answer_width``)."""
        digits = answer_tokens[:, : self.answer_width].long().clamp(0, 9)
        return from_digits(digits.flip(-1) if self.answer_lsb_first else digits)

    def from_text(self, text: str) -> tuple[int, int, int]:
        """Parse one example back into ``(a, b, answer)``; ValueError names what is malformed."""
        if not isinstance(text, str):
            raise ValueError(f"expected a string, got {type(text).__name__}")
        W, A = self.width, self.answer_width
        if self.format == "paper":
            if not re.fullmatch(r"\d+", text):
                raise ValueError(f"malformed 'paper' example {text!r}: only digits are allowed")
            if len(text) != 2 * W + A:
                raise ValueError(f"malformed 'paper' example {text!r}: expected {2 * W + A} digits, got {len(text)}")
            a, b, ans = int(text[:W]), int(text[W : 2 * W]), text[2 * W :][::-1]
            return a, b, int(ans)
        sym, bos = re.escape(self.symbol), re.escape(BOS_SYMBOL) if self.bos else ""
        m = re.fullmatch(rf"{bos}(\d+){sym}(\d+)=(\d+)\.", text)
        if not m:
            start = f"{BOS_SYMBOL} (the BOS token) then " if self.bos else ""
            raise ValueError(f"malformed {self.format!r} example {text!r}: expected {start}a{self.symbol}b=c.")
        a_s, b_s, c_s = m.groups()
        for name, s, w in (("a", a_s, W), ("b", b_s, W), ("answer", c_s, A)):
            if len(s) > w:
                raise ValueError(f"{name}={s} has {len(s)} digits; format holds at most {w}")
            if self.pad and len(s) != w:
                raise ValueError(f"{name}={s} is not zero-padded to {w} digits")
        ans = c_s[::-1] if self.answer_lsb_first else c_s
        return int(a_s), int(b_s), int(ans)
