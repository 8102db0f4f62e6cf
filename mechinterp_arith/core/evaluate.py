"""Accuracy of greedy answers: exact match, per answer digit, by operand length; a checkpoint's scores.

Answers come from :func:`~mechinterp_arith.core.decoding.generate` (the fastest exact path).

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.ood_both(ckpt.task, m=4, n=1000)
>>> acc = accuracy(ckpt.model, ckpt.task, a, b)
>>> sorted(acc)
['exact', 'n', 'per_digit']
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from . import data
from .checkpoint import Checkpoint
from .decoding import DEFAULT_BATCH, generate
from .tasks import Task, as_operands
from .train_config import TrainConfig


def score(task: Task, predicted: Int[Tensor, " batch"], target: Int[Tensor, " batch"]) -> dict:
    """Exact match and per-digit accuracy (digit 0 = units) of integer answers."""
    if len(target) == 0:
        return {"n": 0, "exact": float("nan"), "per_digit": []}
    return scores_of(len(target), *correct_counts(task, predicted, target))


def correct_counts(
    task: Task, predicted: Int[Tensor, " batch"], target: Int[Tensor, " batch"]
) -> tuple[int, Int[Tensor, " digit"]]:
    """How many answers are exact, and how many are right in each answer digit (units first)."""
    pred_digits, true_digits = task.answer_digits(predicted), task.answer_digits(target)
    return int((predicted == target).sum()), ((pred_digits == true_digits) & (pred_digits >= 0)).sum(0)


def scores_of(n: int, exact: int, correct: Int[Tensor, " digit"]) -> dict:
    """``{"n", "exact", "per_digit"}`` from the counts of :func:`correct_counts` over ``n`` pairs."""
    return {"n": n, "exact": round(exact / n, 6), "per_digit": [round(x / n, 6) for x in correct.tolist()]}


def accuracy(
    model: TransformerBridge, task: Task, a, b, batch_size: int = DEFAULT_BATCH, progress: tqdm | None = None
) -> dict:
    """``{"n", "exact", "per_digit"}`` of the model's greedy answers against the true ones.

    Decoded and scored ``batch_size`` pairs at a time: memory is bounded by ``batch_size``, not by
    the number of pairs (the same figures as scoring all at once). ``progress``: a tqdm bar the
    pairs done are added to."""
    a, b = as_operands(a), as_operands(b)
    if len(a) == 0:
        return score(task, a, b)
    exact, correct = 0, 0
    for i in range(0, len(a), batch_size):
        ca, cb = a[i : i + batch_size], b[i : i + batch_size]
        chunk_exact, chunk_correct = correct_counts(
            task, generate(model, task, ca, cb, batch_size).answers, task.apply(ca, cb)
        )
        exact, correct = exact + chunk_exact, correct + chunk_correct
        if progress is not None:
            progress.update(len(ca))
    return scores_of(len(a), exact, correct)


def operand_length(x: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
    """Number of decimal digits (0 has one)."""
    return torch.where(x > 0, torch.floor(torch.log10(x.clamp(min=1).double())).long() + 1, torch.ones_like(x))


def accuracy_by_length(
    model: TransformerBridge, task: Task, a, b, batch_size: int = DEFAULT_BATCH
) -> dict[tuple[int, int], dict]:
    """Accuracy per (len(a), len(b)) cell present in the set (decoded ``batch_size`` pairs at a time)."""
    a, b = as_operands(a), as_operands(b)
    predicted = torch.cat(
        [
            generate(model, task, a[i : i + batch_size], b[i : i + batch_size], batch_size).answers
            for i in range(0, len(a), batch_size)
        ]
        or [torch.zeros(0, dtype=torch.long)]
    )
    target = task.apply(a, b)
    la, lb = operand_length(a), operand_length(b)
    out = {}
    for i, j in sorted(set(zip(la.tolist(), lb.tolist()))):
        mask = (la == i) & (lb == j)
        out[(i, j)] = score(task, predicted[mask], target[mask])
    return out


def held_out_pairs(
    ckpt: Checkpoint, n: int | None = None, seed: int = 0
) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], str]:
    """ID pairs to score a checkpoint on: its own held-out test split when its training recorded one
    (first ``n`` of it), else ``n`` (default 10,000) random n-digit pairs. Returns ``(a, b, source)``."""
    training = ckpt.config.get("training") or {}
    if training:
        cfg = TrainConfig.from_dict(training)
        split = data.id_split(
            ckpt.task, cfg.n_train, cfg.n_test, seed=cfg.data_seed, lengths=cfg.operand_lengths or "uniform"
        )
        if len(split.test_a):
            k = len(split.test_a) if n is None else min(n, len(split.test_a))
            return split.test_a[:k], split.test_b[:k], "held-out test split"
    a, b = data.random_pairs(ckpt.task, 10_000 if n is None else n, seed=seed)
    return a, b, "random n-digit pairs"


def evaluate_checkpoint(
    ckpt: Checkpoint,
    ood_digits: list[int] = (),
    n: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> dict:
    """The ``mechinterp-arith evaluate --json`` object: ID and per-length OOD accuracy.

    ``n`` caps the ID set and sizes each OOD set (default 10,000); OOD key ``"m"`` means both
    operands have exactly m digits; each must be longer than the trained length (``data.check_ood_digits``).
    Memory is bounded by ``batch_size`` (:func:`accuracy`). ``progress``: a progress bar of the
    pairs scored on stderr (on a terminal).
    """
    if n is not None:
        data.check_count(n, "n")
    ms = data.check_ood_digits(ckpt.task, ood_digits) if ood_digits else []
    a, b, source = held_out_pairs(ckpt, n, seed)
    n_ood = 10_000 if n is None else n
    with tqdm(
        total=len(a) + n_ood * len(ms), desc=f"evaluate {ckpt.name}", unit="pair", disable=None if progress else True
    ) as bar:
        result = {
            "checkpoint": str(ckpt.path) if ckpt.path is not None else ckpt.name,
            "task": ckpt.task.name,
            "format": ckpt.task.format,
            "train_digits": ckpt.task.digits,
            "id": {**accuracy(ckpt.model, ckpt.task, a, b, batch_size, bar), "source": source},
            "ood": {},
        }
        for m in ms:
            oa, ob = data.ood_both(ckpt.task, m, n_ood, seed=seed)
            result["ood"][str(m)] = accuracy(ckpt.model, ckpt.task, oa, ob, batch_size, bar)
    return result
