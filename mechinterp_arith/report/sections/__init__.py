"""The report's sections, in page order: ``key -> section(ctx) -> dict(title=..., html=...)``.

A part a checkpoint cannot support (the analysis raises
:class:`~mechinterp_arith.core.errors.NotApplicable`) is shown as a note with the reason.
Adding a section is one function here; it gets the checkpoint, settings and asset helpers from its
:class:`~mechinterp_arith.report.context.ReportContext`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..section_keys import SECTION_KEYS
from . import (
    accuracy,
    attention,
    discovery,
    equivalence,
    model_card,
    patching,
    positions,
    representations,
    training,
)

SectionFn = Callable[..., dict]

SECTIONS: dict[str, SectionFn] = {
    "model": model_card.section,
    "training": training.section,
    "accuracy": accuracy.section,
    "positions": positions.section,
    "equivalence": equivalence.section,
    "pca": representations.pca_section,
    "logit_lens": representations.logit_lens_section,
    "matching": representations.matching_section,
    "patching": patching.patching_section,
    "attention": attention.section,
    "circuits": patching.circuits_section,
    "discovery": discovery.section,
}

if tuple(SECTIONS) != SECTION_KEYS:  # the command line lists SECTION_KEYS: one list, checked here
    raise ImportError(f"report/section_keys.py lists {SECTION_KEYS}, but SECTIONS has {tuple(SECTIONS)}")

__all__ = ["SECTIONS", "SectionFn"]
