"""The report's sections, in page order: ``key -> section(ctx) -> dict(title=..., html=...)``.

A section may add ``"status": "unavailable"`` (a placeholder for an analysis this build lacks).
Adding a section is one function here; it gets the checkpoint, settings and asset helpers from its
:class:`~mechinterp_arith.report.context.ReportContext`.
"""

from __future__ import annotations

from typing import Callable

from . import accuracy, analyses, attention, model_card, training

SectionFn = Callable[..., dict]

SECTIONS: dict[str, SectionFn] = {
    "model": model_card.section,
    "training": training.section,
    "accuracy": accuracy.section,
    "equivalence": analyses.equivalence,
    "pca": analyses.pca,
    "logit_lens": analyses.logit_lens,
    "patching": analyses.patching,
    "attention": attention.section,
    "circuits": analyses.circuits,
}

__all__ = ["SECTIONS", "SectionFn"]
