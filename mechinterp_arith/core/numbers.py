"""Integers of any size: the one representation of operand and answer values, and its conversions.

Operands, answers and the values of candidate relations are **1-D numpy arrays of Python ints**
(``dtype=object``, :data:`Values`). Python ints are exact at any size, so a 100-digit sum is simply
``a + b``, ``a % 10**4`` is the truncation, and nothing overflows silently; the arrays index, mask,
compare and concatenate like any numpy array (``a[0] == 1349``, ``(out == a + b).mean()``,
``np.concatenate([a, ra])``). Small integers that feed a model or a plot (tokens, digits, digit counts,
labels) are int64 torch tensors; the conversions between the two live here (docs/architecture.md,
"Numbers of any size", says why this representation).

>>> a = as_operands([349, 10**30 + 1])
>>> a[1] + 1 == 10**30 + 2, a.dtype
(True, dtype('O'))
>>> digits_of(as_operands([349, 7]), 5).tolist()
[[0, 0, 3, 4, 9], [0, 0, 0, 0, 7]]
>>> from_digits(digits_of(a, 31)).tolist() == a.tolist()
True
>>> digit_count(a).tolist()
[3, 31]

Speed: numpy's object arithmetic costs about 0.05 µs per element (0.5 ms for 10,000 values) at any
size; the conversions to and from digits go through int64 tensors 18 digits (a *limb*) at a time, so
3-digit values take one limb and 100-digit values six.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Int, Shaped
from torch import Tensor

# The one annotation of operand and answer values: a 1-D numpy array (dtype object) of Python ints. Its
# length is named ``_n``: jaxtyping checks one dimension but does not tie lengths across a signature (a
# filter or a concatenation returns a different length than it takes; equal lengths of a and b are
# checked where they must hold, by Task.encode_batch).
Values = Shaped[np.ndarray, " _n"]
# what every function that takes operands accepts (as_operands reads them): Values, ints, integer tensors
OperandsLike = Values | Sequence[int] | Tensor | int
LIMB = 18  # decimal digits per int64 limb: 10^18 < 2^63
LIMB_BASE = 10**LIMB
MAX_DIGITS = 4000  # Python converts ints of at most 4,300 digits to text (sys.get_int_max_str_digits)


def as_operands(x: object, name: str = "operands") -> Values:
    """Integers (:data:`OperandsLike`: one int, a sequence, a tensor or a numpy array) as a 1-D
    :data:`Values` array of Python ints; ValueError naming ``name`` for anything else (floats, bools,
    text, arrays of more than one dimension) or values of more than ``MAX_DIGITS`` digits. An object
    array of Python ints is returned as it is (no copy). It takes any object because it is where
    untrusted input is checked (the annotation would otherwise refuse it before the clear message).

    >>> as_operands(7).tolist(), as_operands(torch.tensor([349, 705])).tolist()
    ([7], [349, 705])
    """
    if isinstance(x, Tensor):
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"{name} must be integers, got a tensor of {x.dtype}")
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.ndim > 1:
            raise ValueError(f"{name} must be one-dimensional, got an array of shape {x.shape}")
        if x.dtype.kind in "iu":
            return (x.reshape(-1) if x.ndim == 0 else x).astype(object)
        if x.dtype != object:
            raise ValueError(f"{name} must be integers, got an array of {x.dtype}")
        values = x.reshape(-1) if x.ndim == 0 else x
        flat = values.ravel().tolist()
        if all(type(v) is int for v in flat):
            _check_size(flat, name)
            return values
        return np.array([_integer(v, name) for v in flat], dtype=object).reshape(values.shape)
    if isinstance(x, str):
        raise ValueError(f"{name} must be integers, got the text {x!r}")
    if not isinstance(x, Sequence) and hasattr(x, "__index__"):
        items: list[object] = [x]
    elif isinstance(x, Iterable):
        items = list(x)
    else:
        raise ValueError(f"{name} must be integers, got {x!r}")
    out = np.empty(len(items), dtype=object)
    out[:] = [_integer(v, name) for v in items]
    _check_size(out.tolist(), name)
    return out


def _integer(v: object, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__"):
        raise ValueError(f"{name} must be integers, got {v!r}")
    return operator.index(v)


def _check_size(items: list[int], name: str) -> None:
    widest = max(items, key=abs, default=0)
    if abs(widest).bit_length() > MAX_DIGITS * 3.33:
        raise ValueError(f"{name}: {show(widest)} is too wide (at most {MAX_DIGITS:,} digits)")


def show(v: int, keep: int = 12) -> str:
    """An integer as text for messages: whole up to 2 * ``keep`` + 3 digits, else its ends and length.

    >>> show(12345), show(10**40 + 7)
    ('12345', '100000000000...000000000007 (41 digits)')
    """
    sign, v = ("-" if v < 0 else ""), abs(int(v))
    if v.bit_length() <= (2 * keep + 3) * 3.32:
        return f"{sign}{v}"
    n = count_digits(v)
    low = str(v % 10**keep).zfill(keep)
    high = str(v // 10 ** (n - keep))
    return f"{sign}{high}...{low} ({n} digits)"


def count_digits(v: int) -> int:
    """Decimal digits of one integer (0 has one; the sign is not a digit), at any size."""
    v = abs(int(v))
    n = max(1, int(v.bit_length() * 0.30102999566398120))  # floor(log10(2) * bits) <= digits
    while v >= 10**n:
        n += 1
    return n


def digit_count(x: OperandsLike) -> Int[Tensor, " batch"]:
    """Decimal digits of each integer (0 has one; the sign is not counted).

    >>> digit_count(as_operands([0, 9, 10, 10**25])).tolist()
    [1, 1, 2, 26]
    """
    x = as_operands(x)
    count = torch.ones(x.shape, dtype=torch.long)
    rest = np.abs(x)
    while True:
        big = rest >= LIMB_BASE
        if not big.any():
            break
        count += LIMB * torch.from_numpy(big.astype(bool))
        rest = np.where(big, rest // LIMB_BASE, rest)
    small = torch.from_numpy(rest.astype(np.int64))
    for k in range(1, LIMB):
        count += (small >= 10**k).long()
    return count


def digits_of(x: OperandsLike, width: int) -> Int[Tensor, "batch width"]:
    """The low ``width`` decimal digits of each integer, most significant first, zero-padded
    (``x mod 10^width``; a negative value gives the digits of ``x mod 10^width`` as well).

    >>> digits_of(as_operands([1349, 10**20 + 5]), 3).tolist()
    [[3, 4, 9], [0, 0, 5]]
    """
    x = as_operands(x)
    out = torch.zeros(len(x), width, dtype=torch.long)
    rest = x
    for end in range(width, 0, -LIMB):  # fill one limb from the right at a time
        k = min(LIMB, end)
        limb = torch.from_numpy((rest % 10**k).astype(np.int64))
        powers = 10 ** torch.arange(k - 1, -1, -1, dtype=torch.long)
        out[:, end - k : end] = (limb.unsqueeze(-1) // powers) % 10
        if end > LIMB:
            rest = rest // 10**k
    return out


def from_digits(digits: Int[Tensor, "batch k"]) -> Values:
    """Integers from rows of decimal digits, most significant first (digits outside 0-9 are not
    checked: callers clamp or reject them).

    >>> from_digits(torch.tensor([[1, 0, 5, 4], [0, 0, 0, 7]])).tolist()
    [1054, 7]
    """
    digits = digits.detach().cpu().long()
    k = digits.shape[1]
    value = np.zeros(digits.shape[0], dtype=object)
    for start in range(0, k, LIMB):  # most significant limb first
        part = digits[:, start : start + LIMB]
        powers = 10 ** torch.arange(part.shape[1] - 1, -1, -1, dtype=torch.long)
        limb = (part * powers).sum(-1).numpy().astype(object)
        value = value * 10 ** part.shape[1] + limb
    return value


def digit_at(x: OperandsLike, place: int | Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
    """The decimal digit of each integer >= 0 at ``place`` (0 = units; one place, or one per integer).

    >>> digit_at(as_operands([349, 705]), 1).tolist(), digit_at(as_operands([349, 10**30]), torch.tensor([0, 30])).tolist()
    ([4, 0], [9, 1])
    """
    return as_int64(as_operands(x) // _powers(place) % 10)


def low_digits(x: OperandsLike, j: int) -> Values:
    """Each integer mod 10^j: its low ``j`` decimal digits, at any size.

    >>> low_digits(as_operands([1349, 10**30 + 705]), 3).tolist()
    [349, 705]
    """
    return as_operands(x) % 10**j


def with_digit(
    x: OperandsLike, place: int | Int[Tensor, " batch"], digit: Int[Tensor, " batch"] | OperandsLike
) -> Values:
    """Each integer >= 0 with its digit at ``place`` replaced by ``digit`` (per integer).

    >>> with_digit(as_operands([349, 705]), 2, torch.tensor([1, 9])).tolist()
    [149, 905]
    """
    x = as_operands(x)
    p = _powers(place)
    return x - (x // p % 10) * p + as_operands(digit, "digits") * p


def _powers(place: int | Int[Tensor, " batch"]) -> int | Values:
    if isinstance(place, Tensor) and place.ndim:
        return as_operands([10**p for p in place.tolist()], "places")
    return 10 ** int(place)


def as_int64(x: OperandsLike, name: str = "values") -> Int[Tensor, " batch"]:
    """Integers that fit int64 as a tensor (labels, counts); ValueError naming the first that does not.

    >>> as_int64(as_operands([3, 4])).tolist()
    [3, 4]
    """
    x = as_operands(x)
    too_big = (x >= 2**63) | (x < -(2**63))
    if too_big.any():
        bad = x[np.nonzero(too_big)[0][0]]
        raise ValueError(f"{name}: {show(bad)} does not fit int64")
    return torch.from_numpy(x.astype(np.int64))


# ---- uniform draws of any size from a torch generator ------------------------------------------------------
def uniform_in(low: int, high: int, n: int, g: torch.Generator) -> Values:
    """``n`` integers uniform in ``[low, high)``: ``torch.randint(low, high, (n,), generator=g)``
    (the same draws) while ``high`` fits int64, else limbs of 18 random digits with rejection.

    >>> g = torch.Generator().manual_seed(0)
    >>> v = uniform_in(10**24, 10**25, 1000, g)
    >>> bool(((v >= 10**24) & (v < 10**25)).all())
    True
    """
    low, high = int(low), int(high)
    if not low < high:
        raise ValueError(f"need low < high, got [{show(low)}, {show(high)})")
    if -(2**63) <= low and high < 2**63:
        return torch.randint(low, high, (n,), generator=g).numpy().astype(object)
    span = high - low
    width = count_digits(span - 1)
    kept = np.zeros(0, dtype=object)
    while len(kept) < n:  # a draw of `width` digits lands below span with probability > 1/10
        draw = from_digits(torch.randint(0, 10, (2 * (n - len(kept)) + 8, width), generator=g))
        kept = np.concatenate([kept, draw[draw < span]])
    return kept[:n] + low


def with_digits(length: int, n: int, g: torch.Generator) -> Values:
    """``n`` integers with exactly ``length`` decimal digits, uniform (0-9 count as one digit)."""
    return uniform_in(0 if length == 1 else 10 ** (length - 1), 10**length, n, g)
