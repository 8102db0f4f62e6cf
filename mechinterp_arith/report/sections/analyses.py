"""Sections backed by the analysis modules (equivalence, representations, patching, circuits).

Each function imports its analysis module lazily and renders a labelled placeholder when this
build does not have it, so the report works at every stage of the project. To wire one, replace the
body after the ``optional_module`` check with calls into the module and ``ctx.figure(fig)``.
"""

from __future__ import annotations

from ..context import ReportContext, optional_module, unavailable


def _pending(title: str, modules: tuple[str, ...], what: str) -> dict | None:
    """The placeholder when any of ``modules`` is missing; None when all are importable."""
    missing = [m for m in modules if optional_module(m) is None]
    if missing:
        return unavailable(title, ", ".join(f"mechinterp_arith.{m}" for m in missing), what)
    return None


def _not_wired(title: str, modules: tuple[str, ...], what: str) -> dict:
    names = ", ".join(f"<code>mechinterp_arith.{m}</code>" for m in modules)
    return unavailable(title, "", what, f"{names} is installed, but this version of the report does not render it yet")


def equivalence(ctx: ReportContext) -> dict:
    title, mods = "Equivalence relations", ("equivalence",)
    what = "The equivalence-relation analysis (table, grid maps, probability heatmaps)"
    return _pending(title, mods, what) or _not_wired(title, mods, what)


def pca(ctx: ReportContext) -> dict:
    title, mods = "Representations (PCA)", ("pca",)
    what = "PCA of the hidden states (clusters, OOD projection, training dynamics)"
    return _pending(title, mods, what) or _not_wired(title, mods, what)


def logit_lens(ctx: ReportContext) -> dict:
    title, mods = "Logit lens", ("logit_lens",)
    what = "The logit lens over layers"
    return _pending(title, mods, what) or _not_wired(title, mods, what)


def patching(ctx: ReportContext) -> dict:
    title, mods = "Activation patching", ("patching",)
    what = "Activation-patching heatmaps"
    return _pending(title, mods, what) or _not_wired(title, mods, what)


def circuits(ctx: ReportContext) -> dict:
    title, mods = "Circuit summary", ("circuits",)
    what = "The circuit summary (which heads read which operand digits for each answer digit)"
    return _pending(title, mods, what) or _not_wired(title, mods, what)
