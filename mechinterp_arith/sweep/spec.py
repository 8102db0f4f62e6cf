"""A sweep spec: a TOML file (read with the stdlib's ``tomllib``) naming a grid and/or a list of runs.

.. code-block:: toml

    [sweep]
    name = "smoke"                       # optional: name and description
    [settings]                           # every run
    task = "add"
    digits = 2
    size = "gpt-nano"
    steps = 300
    [grid]                               # the cartesian product of these lists
    positional = ["learned", "rotary"]
    seed = [0, 1]
    [[runs]]                             # optional: each entry x the grid (overrides [settings])
    lr = 1e-3
    [analyses]                           # on each finished model (defaults shown)
    evaluate = true                      # exact match, ID and by OOD operand length
    equivalence = true                   # which ID relation explains the OOD answers
    pca = false                          # separability of the units digit (study Fig. 4)
    n = 1000                             # operand pairs per set
    ood_digits = [3, 4, 5]               # default: n+1 .. n+3 within the format's width
    seed = 0

Setting keys are those of :mod:`mechinterp_arith.sweep.settings`. Everything is checked when the
spec is read, before anything runs: an unknown key or a bad value is one :class:`SpecError` naming
it (and the closest known key).

>>> spec = parse_spec('[settings]\\ndigits = 2\\nsteps = 50\\n[grid]\\nseed = [0, 1]\\npositional = ["learned", "rotary"]')
>>> [r.run_id.rsplit("-", 1)[0] for r in spec.runs]
['add2-learned-s0', 'add2-rotary-s0', 'add2-learned-s1', 'add2-rotary-s1']
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..core import data
from ..core.files import require_regular_file
from .settings import RunSettings, SettingsError, check_value, resolve, unknown_key_message

SECTIONS = ("sweep", "settings", "grid", "runs", "analyses")
ANALYSES = ("evaluate", "equivalence", "pca")
MAX_EXTRA_OOD = 3  # default OOD lengths: n+1 .. n+3 (within the width)
MAX_RUNS = 100_000  # runs in one spec: a 10^8-run grid was expanded until memory ran out


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the bad key or value."""


@dataclass(frozen=True)
class AnalysesSpec:
    """Which analyses run on each finished model, and their sample sizes."""

    evaluate: bool = True
    equivalence: bool = True
    pca: bool = False
    n: int = 1000
    ood_digits: tuple[int, ...] | None = None  # None: n+1 .. n+3 within each task's width
    seed: int = 0

    def lengths(self, task) -> list[int]:
        """The OOD operand lengths evaluated for ``task`` (checked against its width)."""
        if self.ood_digits is not None:
            return data.check_ood_digits(task, self.ood_digits)
        return data.ood_digits_range(task, MAX_EXTRA_OOD)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked sweep: its runs (in spec order), analyses and the text it was read from."""

    runs: tuple[RunSettings, ...]
    analyses: AnalysesSpec = field(default_factory=AnalysesSpec)
    name: str = "sweep"
    description: str = ""
    text: str = ""


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file (SpecError naming the problem; FileNotFoundError when absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep spec at {path}")
    try:
        text = require_regular_file(path, "spec file").read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{path} is not a UTF-8 text file (byte {e.start}: {e.reason}); save the spec as UTF-8"
        ) from None
    return parse_spec(text, path.stem, source=str(path))


def parse_spec(text: str, default_name: str = "sweep", source: str = "spec") -> SweepSpec:
    """Parse and check a spec's TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source} is not valid TOML: {e}") from None
    try:
        return _build(doc, text, default_name)
    except SettingsError as e:
        raise SpecError(f"{source}: {e}") from None


def _table(doc: dict, key: str) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise SettingsError(f"[{key}] must be a table, got {value!r}")
    return value


def _build(doc: dict, text: str, default_name: str) -> SweepSpec:
    for key in doc:
        if key not in SECTIONS:
            raise SettingsError(unknown_key_message(key, SECTIONS, "the spec's top level"))
    meta = _table(doc, "sweep")
    for key, value in meta.items():
        if key not in ("name", "description"):
            raise SettingsError(unknown_key_message(key, ("name", "description"), "[sweep]"))
        if not isinstance(value, str):
            raise SettingsError(f"[sweep] {key} must be a string, got {value!r}")
    base, grid, entries = _table(doc, "settings"), _table(doc, "grid"), doc.get("runs", [{}])
    for key, value in base.items():
        check_value(key, value, "[settings]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SettingsError(f"[grid] {key} must be a non-empty list of values, got {values!r}")
        for v in values:
            check_value(key, v, "[grid]")
        if key in base:
            raise SettingsError(f"{key!r} is in both [settings] and [grid]; keep it in one")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries) or not entries:
        raise SettingsError("[[runs]] must be a list of tables (one [[runs]] header per entry)")
    runs = _expand(base, grid, entries)
    analyses = _analyses(_table(doc, "analyses"), runs)
    return SweepSpec(tuple(runs), analyses, meta.get("name", default_name), meta.get("description", ""), text)


def _expand(base: dict, grid: dict, entries: list[dict]) -> list[RunSettings]:
    count = math.prod(len(values) for values in grid.values()) * len(entries)
    if count > MAX_RUNS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in grid.items())
        raise SettingsError(
            f"the spec makes {count:,} runs ({len(entries)} [[runs]] entries x {sizes or 'no grid'}); "
            f"a sweep holds at most {MAX_RUNS:,}: split it into several specs"
        )
    runs: list[RunSettings] = []
    seen: dict[str, str] = {}
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    for i, entry in enumerate(entries, 1):
        where = f"[[runs]] entry {i}"
        for key, value in entry.items():
            check_value(key, value, where)
            if key in grid:
                raise SettingsError(f"{key!r} is in both [grid] and {where}; keep it in one")
        for combo in combos:
            described = ", ".join(f"{k}={v!r}" for k, v in {**entry, **combo}.items()) or "the [settings]"
            run = resolve({**base, **entry, **combo}, where=f"run ({described})")
            if run.run_id in seen:
                raise SettingsError(f"runs ({seen[run.run_id]}) and ({described}) have the same settings")
            seen[run.run_id] = described
            runs.append(run)
    return runs


def _analyses(table: dict, runs: list[RunSettings]) -> AnalysesSpec:
    known = AnalysesSpec.__dataclass_fields__
    for key, value in table.items():
        if key not in known:
            raise SettingsError(unknown_key_message(key, tuple(known), "[analyses]"))
        ok = {"n": _is_int, "seed": _is_int, "ood_digits": lambda v: isinstance(v, list) and all(map(_is_int, v))}
        if not ok.get(key, lambda v: isinstance(v, bool))(value):
            wanted = {"n": "an integer", "seed": "an integer", "ood_digits": "a list of integers"}.get(
                key, "true or false"
            )
            raise SettingsError(f"[analyses] {key} = {value!r}: expected {wanted}")
    if "ood_digits" in table:
        table = {**table, "ood_digits": tuple(table["ood_digits"])}
    spec = AnalysesSpec(**table)
    try:
        data.check_count(spec.n, "[analyses] n")
        if spec.seed < 0:
            raise ValueError(f"[analyses] seed must be >= 0, got {spec.seed}")
        for run in runs:
            spec.lengths(run.task)
    except ValueError as e:
        raise SettingsError(f"[analyses] {e}" if not str(e).startswith("[") else str(e)) from None
    return spec


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
