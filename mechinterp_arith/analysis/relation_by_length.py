"""Relation by length: how a checkpoint answers operands of 1, 2, ..., L digits (the follow-up's table).

For each operand length m, on a set whose operands have exactly m digits
(:func:`~mechinterp_arith.core.data.length_pairs`):

- ``exact``: the share of greedy answers equal to the true answer;
- ``truncated``: the share equal to the *truncated relation* ``(a mod 10^n) op (b mod 10^n)``, reduced
  mod p for the modular tasks (:meth:`~mechinterp_arith.core.tasks.Task.equivalent_answer`, n the
  trained length; the follow-up's "accuracy with respect to the equivalence class");
- ``best``: the relation the equivalence search finds on those answers, with its coverage
  (:func:`~mechinterp_arith.analysis.equivalence.find_relation`: the truncated relations at every
  power of ten, the true answer mod 10^j, the true answer) and whether it fits;
- ``truncated_true``: the share of the set on which the truncated relation *is* the true answer (no
  model involved): what exact match a model that follows the relation perfectly reaches. It is 1 at
  every length when p divides 10^n (then ``(a mod 10^n) op (b mod 10^n)`` is congruent to ``a op b``
  mod p), and about gcd(p, 10^n) / p for modular addition otherwise (the follow-up's notebook works
  this out: the truncated sum is off by a multiple of 10^n, zero mod p only when the high parts'
  sum is a multiple of p / gcd(p, 10^n)).

Every share comes with its 95% Wilson interval. Sets: ``operands="both"`` (default) gives both
operands exactly m digits (the follow-up's modular test sets); ``"either"`` the longer one (their
addition and multiplication test sets). m = 1 means both operands in 0..9 (0 counts as one digit);
a set with at most ``n`` pairs is used whole (all 100 one-digit pairs; 8,100 two-digit pairs with
``n`` >= 8,100), larger ones are ``n`` random draws. :func:`follow_up_operands` picks the follow-up's
set for a task (``either`` for addition and multiplication, ``both`` for the modular tasks). Subtraction keeps a >= b, and its truncated
relation is the answer of the ID representative ordered the same way, |a mod 10^n - b mod 10^n|
(the search's ``f(a mod 10^j, b mod 10^j)`` is negative when a mod 10^j < b mod 10^j).

:func:`relation_by_length` runs a checkpoint; :func:`relations_by_length` takes any function from
operand pairs to answers (a planted relation in the tests).

>>> from mechinterp_arith import load
>>> table = relation_by_length(load("add3"), lengths=[3, 4], n=500)        # doctest: +SKIP
>>> table[["exact", "truncated", "best", "best_coverage"]]                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import pandas as pd

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.decoding import DEFAULT_BATCH, generate
from ..core.evaluate import answer_rates, score
from ..core.model import ModelConfig
from ..core.numbers import Values, as_operands
from ..core.tasks import Task
from ..core.widening import check_readable
from .equivalence import find_relation, wilson_interval

Answers = Callable[[Values, Values], Values]
MAX_LENGTHS = 9  # the default lengths stop at the follow-up's table; any length the format holds can be asked for
OPERAND_SETS = ("both", "either")


def follow_up_operands(task: Task) -> str:
    """The follow-up's test set for ``task``: ``both`` operands m digits for the modular tasks, ``either``
    (the longer one m digits) for the others (docs/follow_up.md, "The tables").

    >>> follow_up_operands(Task("addmod", 4, modulus=101)), follow_up_operands(Task("mul", 2))
    ('both', 'either')
    """
    return "both" if task.modulus is not None else "either"


def default_lengths(task: Task) -> list[int]:
    """1..min(W, 9): every operand length the format holds, up to the follow-up's 9."""
    return list(range(1, min(task.width, MAX_LENGTHS) + 1))


def check_lengths(task: Task, lengths: Sequence[int], model_config: ModelConfig | None = None) -> list[int]:
    """``lengths`` sorted and distinct if each is an operand length the format holds, else a ValueError.
    With the checkpoint's ``model_config``, lengths past the width are checked against what its weights
    can read in a wider format (:func:`~mechinterp_arith.core.widening.check_readable`: NotApplicable
    naming the limit)."""
    ms = sorted({int(m) for m in lengths})
    if not ms:
        raise ValueError("give at least one operand length")
    for m in ms:
        if m < 1 or (m > task.width and model_config is None):
            raise ValueError(f"length m={m} does not fit the format: operands of 1..{task.width} digits (width W)")
    if model_config is not None:
        check_readable(model_config, task, ms[-1])
    return ms


def below(table_row: dict[str, Any], stop_below: float | None) -> bool:
    """The stop rule of a length curve: this length's exact match is below ``stop_below``."""
    return stop_below is not None and table_row["exact"] < stop_below


def relations_by_length(
    task: Task,
    answers: Answers,
    lengths: Sequence[int] | None = None,
    n: int = 10_000,
    seed: int = 0,
    operands: str = "both",
    stop_below: float | None = None,
) -> pd.DataFrame:
    """One row per length m (the index) of the answers ``answers(a, b)`` gives: ``n`` (pairs),
    ``exhaustive`` (the whole set), ``exact``, ``truncated``, ``best`` (the top relation's name),
    ``best_coverage``, each share with ``_lo``/``_hi`` (95% Wilson), ``fits`` (the top relation's
    interval lies above the fit threshold), ``tied_with`` (relations covering exactly as many answers),
    ``per_digit`` (exact per answer digit, units first) and ``truncated_true`` (the share of pairs
    whose truncated answer is the true one). ``stop_below``: no length is scored after
    the first whose exact match is below it. ``attrs``: ``truncated_relation``, ``operands``."""
    ms = check_lengths(task, default_lengths(task) if lengths is None else lengths)
    data.check_count(n, "n")
    rows = []
    for m in ms:
        rows.append(length_row(task, answers, m, n, seed, operands))
        if below(rows[-1], stop_below):
            break
    return length_table(task, rows, operands)


def length_row(task: Task, answers: Answers, m: int, n: int, seed: int, operands: str) -> dict[str, Any]:
    """The row of :func:`relations_by_length` for operand length ``m`` (``task``'s format holds it)."""
    (a, b), exhaustive = data.length_pairs(task, m, n, seed=seed, operands=operands)
    output = as_operands(answers(a, b), "answers")
    search = find_relation(task, a, b, output, max_counterexamples=0)
    true_fit = next(r for r in search.relations if r.kind == "true")
    # the search's candidate f(a mod 10^n, b mod 10^n) is Task.equivalent_answer(a, b, n): the truncated relation
    truncated = next(r for r in search.relations if r.kind == "truncated" and r.j == task.digits)
    row: dict[str, Any] = {"m": m, "n": len(a), "exhaustive": exhaustive}
    for key, hits in (("exact", true_fit.hits), ("truncated", truncated.hits), ("best_coverage", search.top.hits)):
        lo, hi = wilson_interval(hits, len(a))
        row.update({key: hits / len(a), f"{key}_lo": lo, f"{key}_hi": hi})
    row.update(
        best=search.top.name,
        fits=search.fits,
        tied_with=search.tied_with,
        per_digit=score(task, output, task.apply(a, b))["per_digit"],
        truncated_true=answer_rates(None, task, a, b, answers=task.apply(a, b))["equivalent"],
    )
    return row


def length_table(task: Task, rows: list[dict[str, Any]], operands: str) -> pd.DataFrame:
    """The rows of :func:`length_row` as :func:`relations_by_length`'s table."""
    table = pd.DataFrame(rows).set_index("m")
    table.attrs.update(truncated_relation=task.equivalent_description(), operands=operands)
    return table


def relation_by_length(
    ckpt: Checkpoint,
    lengths: Sequence[int] | None = None,
    n: int = 10_000,
    seed: int = 0,
    operands: str = "both",
    batch_size: int = DEFAULT_BATCH,
    stop_below: float | None = None,
) -> pd.DataFrame:
    """:func:`relations_by_length` of the checkpoint's greedy answers (lengths default 1..min(W, 9)).
    Lengths past the format's width are read by the same weights in a format of width m
    (:meth:`~mechinterp_arith.core.checkpoint.Checkpoint.for_length`; NotApplicable, before any work,
    where the scheme cannot: learned, or IDs past the position table). ``stop_below`` (e.g. 0.5): the
    length curve ends at the first length whose exact match is below it."""
    ms = check_lengths(ckpt.task, default_lengths(ckpt.task) if lengths is None else lengths, ckpt.model_config)
    data.check_count(n, "n")
    rows = []
    for m in ms:
        at = ckpt.for_length(m)

        def answers(a: Values, b: Values, at: Checkpoint = at) -> Values:
            return generate(at.model, at.task, a, b, batch_size).answers

        rows.append(length_row(at.task, answers, m, n, seed, operands))
        if below(rows[-1], stop_below):
            break
    return length_table(ckpt.task, rows, operands)


def by_length_dict(ckpt: Checkpoint, table: pd.DataFrame) -> dict[str, Any]:
    """The ``mechinterp-arith equivalence CKPT --lengths ... --json`` object."""

    def ci(r: dict[Hashable, Any], key: str) -> list[float]:
        return [round(r[f"{key}_lo"], 6), round(r[f"{key}_hi"], 6)]

    rows = []
    for m, r in zip(table.index.tolist(), table.to_dict("records")):
        rows.append(
            {
                "m": int(m),
                "n": int(r["n"]),
                "exhaustive": bool(r["exhaustive"]),
                "exact": round(r["exact"], 6),
                "exact_ci95": ci(r, "exact"),
                "truncated": round(r["truncated"], 6),
                "truncated_ci95": ci(r, "truncated"),
                "best_relation": {
                    "name": r["best"],
                    "coverage": round(r["best_coverage"], 6),
                    "ci95": ci(r, "best_coverage"),
                    "fits": bool(r["fits"]),
                    "tied_with": list(r["tied_with"]),
                },
                "per_digit": list(r["per_digit"]),
                "truncated_true": round(r["truncated_true"], 6),
            }
        )
    return {
        "checkpoint": str(ckpt.path) if getattr(ckpt, "path", None) is not None else ckpt.task.name,
        "task": ckpt.task.name,
        "train_digits": ckpt.task.digits,
        "operands": table.attrs.get("operands", "both"),
        "truncated_relation": table.attrs.get("truncated_relation", ckpt.task.equivalent_description()),
        "lengths": rows,
    }
