"""Evaluation sets and rates shared by several sections (computed once per report)."""

from __future__ import annotations

from transformer_lens.model_bridge import TransformerBridge

from ...core import data
from ...core.decoding import greedy_matches
from ...core.evaluate import held_out_pairs
from ...core.numbers import Values
from ..context import ReportContext


def rates(model: TransformerBridge, task, a: Values, b: Values) -> dict[str, float]:
    """Exact-match rate and the rate of greedy answers equal to the equivalent answer
    (the study's rule, ``task.equivalent_answer``)."""
    exact, rule = greedy_matches(model, task, a, b, [task.apply(a, b), task.equivalent_answer(a, b)])
    return {"exact": exact.float().mean().item(), "mod_rule": rule.float().mean().item()}


def snapshot_model(ctx: ReportContext, step: int):
    """The bridge saved at ``step`` (the checkpoint loads each snapshot once)."""
    return ctx.ckpt.load_snapshot(step)


def eval_sets(ctx: ReportContext) -> dict[str, tuple[Values, Values]]:
    """``{"id": (a, b), "ood": (a, b)}``: held-out ID pairs and both-operands-(n+1)-digit pairs."""

    def compute():
        n, seed, task = ctx.settings.n_samples, ctx.settings.seed, ctx.ckpt.task
        a, b, _ = held_out_pairs(ctx.ckpt, n, seed)
        sets = {"id": (a, b)}
        m = data.default_ood_digits(task)
        if m is not None:
            sets["ood"] = data.ood_both(task, m, n, seed=seed)
        return sets

    return ctx.cached("eval_sets", compute)
