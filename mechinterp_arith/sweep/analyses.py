"""The figures measured on each finished model of a sweep: flat ``{name: number or text}`` mappings.

Each analysis is a library function of the core or the analysis layer; this module only picks
the numbers results.csv keeps. An analysis a task cannot support (``NotApplicable``) leaves a
``<analysis>_note`` column with the reason instead of its figures.

>>> from mechinterp_arith import load
>>> figures = analyse_run(load("add3"), AnalysesSpec(n=200, equivalence=False))   # doctest: +SKIP
>>> figures["id_exact"], figures["exact_len4"]                                     # doctest: +SKIP
"""

from __future__ import annotations

import math

from ..analysis.equivalence import analyse_checkpoint
from ..analysis.projection import study_pca
from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.evaluate import evaluate_checkpoint
from .spec import AnalysesSpec


def training_figures(ckpt: Checkpoint) -> dict:
    """The last training evaluation: steps trained, loss, ID and OOD exact match, seconds."""
    if not ckpt.history:
        return {}
    last = ckpt.history[-1]
    out = {
        "train_steps": last["step"],
        "train_loss": last["loss"],
        "train_id_exact": last["id_exact"],
        "train_seconds": last.get("elapsed_s", math.nan),
    }
    if "ood_exact" in last:
        out["train_ood_exact"] = last["ood_exact"]
    return out


def evaluate_figures(ckpt: Checkpoint, spec: AnalysesSpec) -> dict:
    """``id_exact`` (held-out split) and ``exact_len<m>`` (both operands m digits) for each OOD length."""
    lengths = spec.lengths(ckpt.task)
    result = evaluate_checkpoint(ckpt, lengths, n=spec.n, seed=spec.seed)
    out = {"id_exact": result["id"]["exact"]}
    out.update({f"exact_len{m}": r["exact"] for m, r in result["ood"].items()})
    return out


def equivalence_figures(ckpt: Checkpoint, spec: AnalysesSpec) -> dict:
    """The relation found on both-operands-(n+1)-digit inputs (the first OOD length): its name,
    coverage, whether it fits, and consistency with the model's own ID answers."""
    lengths = spec.lengths(ckpt.task)
    if not lengths:
        data.require_ood_digits(ckpt.task)  # NotApplicable: the format holds no longer operand
    result = analyse_checkpoint(ckpt, [lengths[0]], n=spec.n, seed=spec.seed, one_longer=False)["ood"][str(lengths[0])]
    top = result.search.top
    return {
        "equiv_digits": lengths[0],
        "equiv_relation": top.name,
        "equiv_coverage": round(top.coverage, 6),
        "equiv_fits": result.search.fits,
        "equiv_consistency": round(result.consistency, 6),
    }


def pca_figures(ckpt: Checkpoint, spec: AnalysesSpec) -> dict:
    """The study's Fig. 4 (:func:`~mechinterp_arith.analysis.projection.study_pca`, what
    ``mechinterp-arith pca --n N --n-id N`` prints): separability of the units digit of the answer in
    the final residual stream over operands up to n+1 digits (nearest-centroid accuracy and
    silhouette) and the share of OOD pairs projected on their equivalent cluster (when any is OOD)."""
    summary = study_pca(ckpt, n=spec.n, n_id=spec.n, seed=spec.seed).summary
    out = {
        "pca_centroid_accuracy": round(summary["nearest_centroid_accuracy"], 6),
        "pca_silhouette": round(summary["silhouette"], 6),
    }
    if "ood_on_equivalent_cluster" in summary:
        out["pca_ood_on_equivalent_cluster"] = round(summary["ood_on_equivalent_cluster"], 6)
    return out


ANALYSIS_FUNCTIONS = {"evaluate": evaluate_figures, "equivalence": equivalence_figures, "pca": pca_figures}


def analyse_run(ckpt: Checkpoint, spec: AnalysesSpec) -> dict:
    """Training figures plus every analysis ``spec`` turns on (NotApplicable becomes a note)."""
    figures = training_figures(ckpt)
    for name, function in ANALYSIS_FUNCTIONS.items():
        if getattr(spec, name):
            try:
                figures.update(function(ckpt, spec))
            except NotApplicable as e:
                figures[f"{name}_note"] = str(e)
    return figures
