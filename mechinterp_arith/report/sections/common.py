"""Evaluation sets and answer checks shared by several sections (computed once per report)."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from ... import data
from ...evaluate import generate, held_out_pairs
from ...model import model_device
from ...tasks import digits_of
from ..context import ReportContext

BATCH = 1024  # rows a forward pass (faster than larger batches on a CPU)


def ood_digits(task) -> int | None:
    """The study's OOD operand length (n + 1) when the format holds it, else None."""
    return task.digits + 1 if task.digits < task.width else None


def mod_rule(task, a: Int[Tensor, "batch"], b: Int[Tensor, "batch"]) -> Int[Tensor, "batch"]:
    """The study's OOD rule: ``(a mod 10^n) op (b mod 10^n)``, e.g. 1349+705 -> 349+705 = 1054."""
    N = 10**task.digits
    return task.apply(a % N, b % N)


@torch.inference_mode()
def answers_match(model, task, a: Int[Tensor, "batch"], b: Int[Tensor, "batch"],
                  targets: list[Int[Tensor, "batch"]]) -> list[Bool[Tensor, "batch"]]:
    """For each target, whether the model's greedy answer equals it, with one forward pass per target.

    Greedy decoding returns ``c`` exactly when every answer digit of ``c`` is the argmax given the
    digits of ``c`` before it, so teacher forcing ``c`` decides it without generating. Rows whose
    target equals an earlier target's (e.g. the mod rule on ID pairs) reuse that answer.
    Unpadded formats fall back to generating. Example: ``answers_match(model, task, a, b, [task.apply(a, b)])``.
    """
    if not task.fixed_length:
        answers = generate(model, task, a, b).answers
        return [answers == c for c in targets]
    A, P = task.answer_width, task.prompt_len
    prompt = task.encode_batch(a, b)[0][:, :P]
    device = model_device(model)
    out: list[Bool[Tensor, "batch"]] = []
    for k, c in enumerate(targets):
        hit = torch.zeros(len(c), dtype=torch.bool)
        todo = torch.ones(len(c), dtype=torch.bool)
        for earlier, earlier_hit in zip(targets[:k], out):  # rows already decided for the same answer
            same = todo & (c == earlier)
            hit[same], todo = earlier_hit[same], todo & ~same
        todo &= (c >= 0) & (c < 10**A)
        rows = torch.nonzero(todo).squeeze(1)
        ans = digits_of(c[rows], A)
        if task.answer_lsb_first:
            ans = ans.flip(-1)
        tokens = torch.cat([prompt[rows], ans], dim=1)[:, : P + A - 1]
        for i in range(0, len(rows), BATCH):
            logits = model(tokens[i : i + BATCH].to(device))[:, P - 1 : P - 1 + A]
            hit[rows[i : i + BATCH]] = (logits.argmax(-1).cpu() == ans[i : i + BATCH]).all(-1)
        out.append(hit)
    return out


def rates(model, task, a: Int[Tensor, "n"], b: Int[Tensor, "n"]) -> dict[str, float]:
    """Exact-match rate and the rate of greedy answers equal to the mod-10^n rule."""
    exact, rule = answers_match(model, task, a, b, [task.apply(a, b), mod_rule(task, a, b)])
    return {"exact": exact.float().mean().item(), "mod_rule": rule.float().mean().item()}


def snapshot_model(ctx: ReportContext, step: int):
    """The bridge saved at ``step``, loaded once per report (sections share it)."""
    return ctx.cached(f"snapshot_model:{step}", lambda: ctx.ckpt.load_snapshot(step))


def eval_sets(ctx: ReportContext) -> dict[str, tuple[Int[Tensor, "n"], Int[Tensor, "n"]]]:
    """``{"id": (a, b), "ood": (a, b)}``: held-out ID pairs and both-operands-(n+1)-digit pairs."""

    def compute():
        n, seed, task = ctx.settings.n_samples, ctx.settings.seed, ctx.ckpt.task
        a, b, _ = held_out_pairs(ctx.ckpt, n, seed)
        sets = {"id": (a, b)}
        m = ood_digits(task)
        if m is not None:
            sets["ood"] = data.ood_both(task, m, n, seed=seed)
        return sets

    return ctx.cached("eval_sets", compute)
