"""Which in-distribution relation explains a model's out-of-distribution answers?

The study's central finding: a model trained on n-digit addition answers a pair of longer operands
with ``(a mod 10^n) + (b mod 10^n)``, the true answer of its *ID representative*. This module
finds such a relation on its own, on any checkpoint, and quantifies it.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.ood_both(ckpt.task, m=4, n=2000)
>>> result = analyse_set(ckpt.model, ckpt.task, a, b)
>>> result.best.name, round(result.best.coverage, 3)           # doctest: +SKIP
('(a mod 10^3) + (b mod 10^3)', 0.998)

Candidates, for f the task's operation (modular tasks included) and j = 1..W:

* ``truncated`` j: ``f(a mod 10^j, b mod 10^j)``, e.g. ``((a mod 10^2) + (b mod 10^2)) mod 101``;
* ``true_mod`` j: the true answer mod 10^j (only its low j digits kept), j = 1..answer_width;
* ``true``: the true answer itself.

Coverage is the share of outputs *exactly equal* to the candidate's value (not congruent to it mod
10^j): under exact equality a trivially true relation such as "the true answer mod 10" only
covers the outputs that happen to be below 10, so it cannot win spuriously. Each candidate also
gets its digit-wise agreement (share of answer digits equal), reported but never used to choose.

Choice: highest coverage; ties (equal counts) go to the larger modulus, with ``true`` counted as
infinite. A tie means the data cannot tell the candidates apart, and the larger modulus is the
weaker claim (less of the input thrown away): if outputs equal the true answer and also
``(a mod 10^2 + b mod 10^2) mod 100`` (as for p = 100) we report the true answer and list the
truncated relation as tied. The winner *fits* only when the lower end of its 95% Wilson interval
exceeds :data:`FIT_THRESHOLD` = 0.5, i.e. when we are confident it covers a majority of outputs;
otherwise the result says "no relation fits" and gives the best coverage found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.decoding import generate
from ..core.numbers import OperandsLike, Values, as_operands, low_digits
from ..core.tasks import Task
from .choices import FIT_THRESHOLD

KIND_ORDER = {"true": 2, "truncated": 1, "true_mod": 0}  # last tie-break, after the modulus


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (scipy's ``binomtest(...).proportion_ci``).

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is not degenerate at 0% or
    100%, where coverages of these models often sit. NaN bounds for ``n == 0``.

    >>> [round(x, 4) for x in wilson_interval(95, 100)]
    [0.8882, 0.9785]
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= hits <= n:
        raise ValueError(f"hits={hits} must be between 0 and n={n}")
    ci = binomtest(int(hits), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass
class Candidate:
    """A candidate relation and its value on each input."""

    name: str
    kind: str  # "truncated", "true_mod" or "true"
    j: int | None  # the power of ten (None for "true")
    values: Values

    @property
    def modulus(self) -> int | None:
        return None if self.j is None else 10**self.j


def candidate_relations(task: Task, a: OperandsLike, b: OperandsLike) -> list[Candidate]:
    """Every candidate relation's value on each pair (see the module docstring)."""
    a, b = as_operands(a), as_operands(b)
    out = [Candidate(task.describe(), "true", None, task.apply(a, b))]
    true = out[0].values
    for j in range(1, task.width + 1):
        out.append(Candidate(task.equivalent_description(j), "truncated", j, task.equivalent_answer(a, b, j)))
    for j in range(1, task.answer_width + 1):
        out.append(Candidate(f"({task.describe()}) mod 10^{j}", "true_mod", j, low_digits(true, j)))
    return out


def digit_agreement(task: Task, output: OperandsLike, target: OperandsLike) -> list[float]:
    """Share of rows whose answer digit k equals the target's (k = 0 is the units digit)."""
    output, target = as_operands(output, "output"), as_operands(target, "target")
    if len(output) == 0:
        return [float("nan")] * task.answer_width
    po, pt = task.answer_digits(output), task.answer_digits(target)
    return ((po == pt) & (po >= 0)).float().mean(0).tolist()


@dataclass
class RelationFit:
    """How well one candidate relation covers a set of outputs."""

    name: str
    kind: str
    j: int | None
    hits: int
    n: int
    digit_agreement: list[float]
    same_as_true: bool  # equal to the true answer on every input of this set

    @property
    def modulus(self) -> int | None:
        return None if self.j is None else 10**self.j

    @property
    def coverage(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.n)

    def sort_key(self) -> tuple[int, float, int]:
        return (self.hits, math.inf if self.j is None else self.j, KIND_ORDER[self.kind])

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {
            "name": self.name,
            "kind": self.kind,
            "modulus": self.modulus,
            "coverage": round(self.coverage, 6),
            "ci95": [round(lo, 6), round(hi, 6)],
            "hits": self.hits,
            "n": self.n,
            "digit_agreement": [round(x, 6) for x in self.digit_agreement],
            "same_as_true": self.same_as_true,
        }


@dataclass
class RelationSearch:
    """The outcome of :func:`find_relation` on one set of outputs.

    ``fits`` says whether ``top`` (the highest-coverage candidate) covers a majority of outputs;
    ``best`` is ``top`` when it fits and None ("no relation fits") otherwise. ``counterexamples``
    lists the inputs whose output differs from ``top``'s value.
    """

    relations: list[RelationFit]  # best first
    top: RelationFit
    fits: bool
    tied_with: list[str]
    counterexamples: pd.DataFrame
    n_counterexamples: int
    threshold: float = FIT_THRESHOLD

    @property
    def best(self) -> RelationFit | None:
        return self.top if self.fits else None

    @property
    def verdict(self) -> str:
        if self.fits:
            return f"{self.top.name} covers {self.top.coverage:.4f} of outputs"
        return f"no relation fits (best coverage {self.top.coverage:.4f}, by {self.top.name})"

    def best_dict(self) -> dict[str, Any] | None:
        if not self.fits:
            return None
        lo, hi = self.top.ci95
        return {
            "name": self.top.name,
            "kind": self.top.kind,
            "modulus": self.top.modulus,
            "coverage": round(self.top.coverage, 6),
            "ci95": [round(lo, 6), round(hi, 6)],
            "same_as_true": self.top.same_as_true,
            "tied_with": self.tied_with,
        }


def find_relation(
    task: Task,
    a: OperandsLike,
    b: OperandsLike,
    output: OperandsLike,
    threshold: float = FIT_THRESHOLD,
    max_counterexamples: int = 10_000,
    rep_output: OperandsLike | None = None,
) -> RelationSearch:
    """Score every candidate relation against given outputs (a model's, or synthetic ones).

    ``rep_output`` (the model's outputs on the ID representatives), when given, becomes a column
    of the counter-examples.

    >>> task = Task("add", digits=3)
    >>> a, b = as_operands([1234, 5678]), as_operands([4321, 8765])
    >>> search = find_relation(task, a, b, (a % 1000) + (b % 1000))
    >>> search.top.name, search.top.coverage, search.fits       # two outputs are too few to fit
    ('(a mod 10^3) + (b mod 10^3)', 1.0, False)
    """
    a, b, output = as_operands(a), as_operands(b), as_operands(output, "output")
    if not len(a) == len(b) == len(output) or len(a) == 0:
        raise ValueError(f"need equally long, non-empty a, b and output; got {len(a)}, {len(b)}, {len(output)}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    cands = candidate_relations(task, a, b)
    true = cands[0].values
    out_digits = task.answer_digits(output)
    fits = []
    for c in cands:
        agree = ((out_digits == task.answer_digits(c.values)) & (out_digits >= 0)).float().mean(0).tolist()
        fits.append(
            RelationFit(
                c.name, c.kind, c.j, int((output == c.values).sum()), len(a), agree, bool((c.values == true).all())
            )
        )
    order = sorted(range(len(fits)), key=lambda i: fits[i].sort_key(), reverse=True)
    relations = [fits[i] for i in order]
    top, top_values = relations[0], cands[order[0]].values
    tied = [r.name for r in relations[1:] if r.hits == top.hits]
    wrong = np.nonzero(output != top_values)[0]
    keep = wrong[:max_counterexamples]
    counter = pd.DataFrame(
        {"a": a[keep], "b": b[keep], "output": output[keep], "true": true[keep], "equivalent": top_values[keep]}
    )
    if rep_output is not None:
        counter["representative_output"] = as_operands(rep_output, "rep_output")[keep]
    return RelationSearch(relations, top, top.ci95[0] > threshold, tied, counter, len(wrong), threshold)


@dataclass
class EquivalenceResult:
    """Everything measured on one OOD set: outputs, the relation search, representatives, digits."""

    label: str
    task: Task
    a: Values
    b: Values
    output: Values
    rep_output: Values  # the model's output on the ID representative
    search: RelationSearch
    per_digit: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def exact(self) -> float:
        return float((self.output == self.task.apply(self.a, self.b)).mean())

    @property
    def consistency(self) -> float:
        """Share of inputs whose output equals the model's own output on their ID representative."""
        return float((self.output == self.rep_output).mean())

    @property
    def best(self) -> RelationFit | None:
        return self.search.best

    @property
    def counterexamples(self) -> pd.DataFrame:
        """Inputs the top relation misses: a, b, output, true, equivalent, representative_output."""
        return self.search.counterexamples

    def to_dict(self, max_relations: int | None = None) -> dict[str, Any]:
        hits = int((self.output == self.task.apply(self.a, self.b)).sum())
        consistent = int((self.output == self.rep_output).sum())
        rels = self.search.relations if max_relations is None else self.search.relations[:max_relations]
        return {
            "n": self.n,
            "exact": round(self.exact, 6),
            "exact_ci95": [round(x, 6) for x in wilson_interval(hits, self.n)],
            "fits": self.search.fits,
            "verdict": self.search.verdict,
            "best_relation": self.search.best_dict(),
            "best_coverage": round(self.search.top.coverage, 6),
            "relations": [r.to_dict() for r in rels],
            "consistency": round(self.consistency, 6),
            "consistency_ci95": [round(x, 6) for x in wilson_interval(consistent, self.n)],
            "per_digit": self.per_digit,
            "n_counterexamples": self.search.n_counterexamples,
            "counterexamples": self.counterexamples.head(5).to_dict(orient="records"),
        }


def analyse_set(
    model: TransformerBridge,
    task: Task,
    a: OperandsLike,
    b: OperandsLike,
    label: str = "",
    threshold: float = FIT_THRESHOLD,
    max_counterexamples: int = 10_000,
) -> EquivalenceResult:
    """Generate the model's answers on ``(a, b)`` and on their ID representatives, then search.

    ``per_digit`` holds the accuracy of each answer digit (units first) against the true answer
    and against the *equivalent* answer, the true answer of the ID representative
    ``f(a mod 10^n, b mod 10^n)``.
    """
    a, b = as_operands(a), as_operands(b)
    task.check_operands(a, b)
    ra, rb = task.id_representative(a, b)
    both = generate(model, task, np.concatenate([a, ra]), np.concatenate([b, rb])).answers
    output, rep_output = both[: len(a)], both[len(a) :]
    search = find_relation(task, a, b, output, threshold, max_counterexamples, rep_output)
    per_digit = {
        "true": [round(x, 6) for x in digit_agreement(task, output, task.apply(a, b))],
        "equivalent": [round(x, 6) for x in digit_agreement(task, output, task.apply(ra, rb))],
    }
    return EquivalenceResult(label, task, a, b, output, rep_output, search, per_digit)


def analyse_checkpoint(
    ckpt: Checkpoint,
    ood_digits: Sequence[int] | None = None,
    n: int = 10_000,
    seed: int = 0,
    one_longer: bool = True,
    threshold: float = FIT_THRESHOLD,
    progress: bool = False,
) -> dict[str, dict[str, EquivalenceResult]]:
    """Analyse both-operands-m-digits sets (key ``"ood"``) and, with ``one_longer``, sets with one
    m-digit operand and one ID operand (key ``"one_longer"``), for each m in ``ood_digits``
    (default: n+1; :class:`~mechinterp_arith.core.errors.NotApplicable` when the format holds no
    longer operand). Results keyed by ``str(m)``. ``progress``: a bar of the sets done on stderr
    (on a terminal)."""
    task = ckpt.task
    if ood_digits is None:
        ood_digits = [data.require_ood_digits(task)]
    ms = data.check_ood_digits(task, ood_digits)
    data.check_count(n, "n")
    out: dict[str, dict[str, EquivalenceResult]] = {"ood": {}}
    if one_longer:
        out["one_longer"] = {}
    bar = tqdm(
        total=len(ms) * (2 if one_longer else 1), desc="equivalence", unit="set", disable=None if progress else True
    )
    with bar:
        for m in ms:
            bar.set_postfix_str(f"both {m}-digit")
            a, b = data.ood_both(task, m, n, seed=seed)
            out["ood"][str(m)] = analyse_set(ckpt.model, task, a, b, f"both {m}-digit", threshold)
            bar.update(1)
            if one_longer:
                bar.set_postfix_str(f"one {m}-digit")
                a, b = data.ood_one_longer(task, m, n, seed=seed)
                out["one_longer"][str(m)] = analyse_set(ckpt.model, task, a, b, f"one {m}-digit", threshold)
                bar.update(1)
    return out


def report_dict(
    ckpt: Checkpoint, results: dict[str, dict[str, EquivalenceResult]], max_relations: int | None = None
) -> dict[str, Any]:
    """The ``mechinterp-arith equivalence --json`` object."""
    return {
        "checkpoint": str(ckpt.path) if getattr(ckpt, "path", None) is not None else ckpt.task.name,
        "task": ckpt.task.name,
        "train_digits": ckpt.task.digits,
        "threshold": FIT_THRESHOLD,
        **{key: {m: r.to_dict(max_relations) for m, r in sets.items()} for key, sets in results.items()},
    }
