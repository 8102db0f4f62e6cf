"""Length generalisation of one checkpoint: how far past its trained length it adds, and why.

For operands of exactly m digits (m = n in distribution, m > n out of it), :func:`length_profile`
puts side by side what the other analyses measure one at a time:

- ``exact``: greedy exact match;
- ``relation``, ``coverage``: the best equivalence relation over the model's answers and the share
  of answers it explains (:func:`~mechinterp_arith.analysis.equivalence.analyse_set`): ``a + b``
  when the model generalises, ``(a mod 10^n) + (b mod 10^n)`` when it truncates as in the study;
- ``separability``: nearest-centroid accuracy of the true answer digit in the top principal
  components of the last residual state at the position predicting it
  (:func:`~mechinterp_arith.analysis.pca.residual_pca`), for the units digit and for digit n, the
  first place the training data never filled;
- ``alignment``: how sharply attention brings a_k and b_k to the position predicting answer
  digit k (:func:`operand_alignment`): per digit the best head's attention to the two digits,
  averaged over the digits below n (``alignment_id``) and from n up (``alignment_ood``).

Every scheme runs through it (the bridge computes each scheme's own position IDs).

>>> from mechinterp_arith import load
>>> profile = length_profile(load("add3"), ood_digits=[4], n=500)        # doctest: +SKIP
>>> profile.loc[4, ["exact", "relation", "coverage"]]                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.positions import require_fixed_length
from .attention import operand_attention
from .equivalence import analyse_set
from .pca import residual_pca

ALIGNMENT_N = 256  # pairs whose attention patterns are averaged


def operand_alignment(ckpt: Checkpoint, m: int, n: int = ALIGNMENT_N, seed: int = 0) -> pd.DataFrame:
    """Attention from the position predicting answer digit k to a_k and to b_k, per layer and head,
    for k < m (and k below the answer's width), on pairs whose operands both have exactly ``m`` digits (true answers teacher-forced).

    Columns: ``layer, head, digit, to_a, to_b, aligned`` (``aligned = to_a + to_b``).
    """
    task = ckpt.task
    require_fixed_length(task)
    if not 1 <= m <= task.width:
        raise ValueError(f"m={m} does not fit the format (1..{task.width} digits)")
    a, b = data.ood_lengths(task, m, m, n, seed=seed)
    digits = range(min(m, task.answer_width))  # a modular answer may have fewer digits than the operands
    att = operand_attention(ckpt, a, b, digits, digits)
    att = att[att.place == att.digit].pivot(index=["layer", "digit", "head"], columns="operand", values="attention")
    out = att.rename(columns={"a": "to_a", "b": "to_b"}).reset_index()[["layer", "head", "digit", "to_a", "to_b"]]
    out["aligned"] = out.to_a + out.to_b
    out.columns.name = None
    return out


def alignment_summary(alignment: pd.DataFrame, n_digits: int) -> dict[str, Any]:
    """The best head's ``aligned`` attention per digit, averaged below ``n_digits`` and from it up."""
    best = alignment.groupby("digit")["aligned"].max()
    low, high = best[best.index < n_digits], best[best.index >= n_digits]
    return {
        "alignment_id": float(low.mean()) if len(low) else float("nan"),
        "alignment_ood": float(high.mean()) if len(high) else float("nan"),
        "alignment_by_digit": [round(float(x), 4) for x in best.tolist()],
    }


def length_profile(
    ckpt: Checkpoint, ood_digits: Sequence[int] | None = None, n: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per operand length m (the trained n, then each of ``ood_digits``, default n+1..W, at most
    ``data.MAX_SPREAD`` of them evenly spaced):
    ``exact, relation, coverage, coverage_lo, coverage_hi, separability_units, separability_first_ood,
    alignment_id, alignment_ood, alignment_by_digit``, indexed by m."""
    task = ckpt.task
    require_fixed_length(task)
    if ood_digits is None:
        data.require_ood_digits(task)  # NotApplicable: the format holds no longer operand
        longer = data.ood_digits_range(task)  # n+1..W: at most MAX_SPREAD of them, evenly spaced
        ood_digits = data.spread_lengths(longer[0], longer[-1])
    lengths = [task.digits, *data.check_ood_digits(task, ood_digits)]
    data.check_count(n, "n")
    rows = []
    for m in lengths:
        a, b = data.ood_lengths(task, m, m, n, seed=seed)
        eq = analyse_set(ckpt.model, task, a, b, f"both {m}-digit")
        top = eq.search.top  # the best candidate, whether or not it fits (``fits``)
        row = {
            "m": m,
            "exact": eq.exact,
            "relation": top.name,
            "coverage": top.coverage,
            "coverage_lo": top.ci95[0],
            "coverage_hi": top.ci95[1],
            "fits": eq.search.fits,
        }
        first_ood = min(task.digits, task.answer_width - 1)
        for key, k in (("separability_units", 0), ("separability_first_ood", first_ood)):
            row[key] = residual_pca(
                ckpt, a, b, position=f"ans{k}", label=f"ans{k}", seed=seed
            ).nearest_centroid_accuracy
        row.update(alignment_summary(operand_alignment(ckpt, m, min(n, ALIGNMENT_N), seed), task.digits))
        rows.append(row)
    return pd.DataFrame(rows).set_index("m")


def compare_schemes(rows: pd.DataFrame, threshold: float = 0.95) -> pd.DataFrame:
    """Seeds side by side: one row per (scheme, m) from rows of :func:`length_profile` tagged with
    ``scheme`` and ``seed``: exact match (mean, min, max, seeds reaching ``threshold``), the most
    frequent best relation with its mean coverage, and mean separability and alignment."""
    needed = {"scheme", "seed", "m", "exact", "relation", "coverage"}
    if not needed <= set(rows.columns):
        raise ValueError(f"rows need the columns {sorted(needed)}; missing {sorted(needed - set(rows.columns))}")
    grouped = rows.groupby(["scheme", "m"], sort=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        exact_mean=("exact", "mean"),
        exact_min=("exact", "min"),
        exact_max=("exact", "max"),
        seeds_reaching=("exact", lambda x: int((x >= threshold).sum())),
        relation=("relation", lambda x: x.mode().iloc[0]),
        relation_seeds=("relation", lambda x: int((x == x.mode().iloc[0]).sum())),
        coverage_mean=("coverage", "mean"),
        separability_units=("separability_units", "mean"),
        separability_first_ood=("separability_first_ood", "mean"),
        alignment_id=("alignment_id", "mean"),
        alignment_ood=("alignment_ood", "mean"),
    )
    return out.reset_index()
