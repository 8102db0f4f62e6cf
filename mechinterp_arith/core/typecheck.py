"""Field types of the settings dataclasses, checked from their annotations.

``ModelConfig`` and ``TrainConfig`` call :func:`check_field_types` first thing in ``__post_init__``,
so a value read from ``config.json`` or passed from Python meets the same rules: an ``int`` field
takes an int (not ``48.0``, not ``True``), a ``float`` field an int or a finite float, a ``str``
field a string, ``X | None`` also None, ``tuple[float, float]`` two numbers (a JSON list is
accepted). Hand-written (~50 lines) because the dataclasses are plain stdlib ones: pydantic would
need its own config on each of them, and JSON Schema counts ``48.0`` as an integer.

>>> from dataclasses import dataclass
>>> @dataclass
... class Example:
...     d_model: int = 48
...     def __post_init__(self):
...         check_field_types(self)
>>> Example(48.0)
Traceback (most recent call last):
ValueError: d_model must be an integer, got 48.0
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _matches(value: object, hint: object) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        return (
            isinstance(value, (tuple, list))
            and len(value) == len(args)
            and all(_matches(v, a) for v, a in zip(value, args))
        )
    raise TypeError(f"check_field_types does not know the type {hint!r}")


def _describe(hint: object) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} numbers"
    names: dict[object, str] = {
        int: "an integer",
        float: "a finite number",
        str: "a string",
        bool: "true or false",
        type(None): "null",
    }
    return names[hint]


def check_field_types(obj: Any) -> None:  # any dataclass instance
    """ValueError naming the first field of dataclass ``obj`` whose value does not fit its annotation."""
    for f in dataclasses.fields(obj):
        hint = _hints(obj.__class__)[f.name]
        value = getattr(obj, f.name)
        if not _matches(value, hint):
            raise ValueError(f"{f.name} must be {_describe(hint)}, got {value!r}")


def check_values(cls: type, values: Mapping[str, object]) -> None:
    """The check of :func:`check_field_types` on ``values`` (field name -> value, e.g. parsed JSON)
    before dataclass ``cls`` is built from them: the same ValueError naming the first bad field,
    raised at the boundary where untrusted values come in rather than inside the constructor."""
    hints = _hints(cls)
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            raise ValueError(f"{name} must be {_describe(hints[name])}, got {value!r}")


def check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    """ValueError unless ``low <= value <= high`` (either bound may be None)."""
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low:,} and {high:,}"
            if low is not None and high is not None
            else f">= {low:,}"
            if low is not None
            else f"<= {high:,}"
        )
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
