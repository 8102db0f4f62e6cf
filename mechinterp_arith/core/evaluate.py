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

from transformer_lens.model_bridge import TransformerBridge

from . import data
from .checkpoint import Checkpoint
from .decoding import DEFAULT_BATCH, generate
from .numbers import Values, as_operands, digit_count
from .tasks import Task
from .train_config import TrainConfig


def score(task: Task, predicted: Values, target: Values) -> dict:
    """Exact match and per-digit accuracy (digit 0 = units) of integer answers."""
    predicted, target = as_operands(predicted, "predicted"), as_operands(target, "target")
    n = len(target)
    if n == 0:
        return {"n": 0, "exact": float("nan"), "per_digit": []}
    pred_digits, true_digits = task.answer_digits(predicted), task.answer_digits(target)
    correct = (pred_digits == true_digits) & (pred_digits >= 0)
    return {
        "n": n,
        "exact": round(float((predicted == target).mean()), 6),
        "per_digit": [round(x, 6) for x in correct.double().mean(0).tolist()],
    }


def accuracy(model: TransformerBridge, task: Task, a, b, batch_size: int = DEFAULT_BATCH) -> dict:
    """``{"n", "exact", "per_digit"}`` of the model's greedy answers against the true ones."""
    a, b = as_operands(a), as_operands(b)
    predicted = generate(model, task, a, b, batch_size).answers
    return score(task, predicted, task.apply(a, b))


def accuracy_by_length(
    model: TransformerBridge, task: Task, a, b, batch_size: int = DEFAULT_BATCH
) -> dict[tuple[int, int], dict]:
    """Accuracy per (len(a), len(b)) cell present in the set."""
    a, b = as_operands(a), as_operands(b)
    predicted = generate(model, task, a, b, batch_size).answers
    target = task.apply(a, b)
    la, lb = digit_count(a), digit_count(b)
    out = {}
    for i, j in sorted(set(zip(la.tolist(), lb.tolist()))):
        mask = ((la == i) & (lb == j)).numpy()
        out[(i, j)] = score(task, predicted[mask], target[mask])
    return out


def held_out_pairs(ckpt: Checkpoint, n: int | None = None, seed: int = 0) -> tuple[Values, Values, str]:
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
    ckpt: Checkpoint, ood_digits: list[int] = (), n: int | None = None, seed: int = 0, batch_size: int = DEFAULT_BATCH
) -> dict:
    """The ``mechinterp-arith evaluate --json`` object: ID and per-length OOD accuracy.

    ``n`` caps the ID set and sizes each OOD set (default 10,000); OOD key ``"m"`` means both
    operands have exactly m digits; each must be longer than the trained length (``data.check_ood_digits``).
    """
    if n is not None:
        data.check_count(n, "n")
    ms = data.check_ood_digits(ckpt.task, ood_digits) if ood_digits else []
    a, b, source = held_out_pairs(ckpt, n, seed)
    result = {
        "checkpoint": str(ckpt.path) if ckpt.path is not None else ckpt.name,
        "task": ckpt.task.name,
        "format": ckpt.task.format,
        "train_digits": ckpt.task.digits,
        "id": {**accuracy(ckpt.model, ckpt.task, a, b, batch_size), "source": source},
        "ood": {},
    }
    for m in ms:
        oa, ob = data.ood_both(ckpt.task, m, 10_000 if n is None else n, seed=seed)
        result["ood"][str(m)] = accuracy(ckpt.model, ckpt.task, oa, ob, batch_size)
    return result
