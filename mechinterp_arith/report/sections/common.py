"""Evaluation sets shared by several sections (computed once per report)."""

from __future__ import annotations

from ...core.data import Pairs
from ...core.evaluate import eval_sets
from ..context import ReportContext


def report_sets(ctx: ReportContext) -> dict[str, Pairs]:
    """:func:`~mechinterp_arith.core.evaluate.eval_sets` at the report's size and seed: ``{"id": (a, b),
    "ood": (a, b)}`` (held-out ID pairs and pairs with both operands n+1 digits)."""
    return ctx.cached("eval_sets", lambda: eval_sets(ctx.ckpt, ctx.settings.n_samples, ctx.settings.seed))
