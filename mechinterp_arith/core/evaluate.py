"""Accuracy of greedy answers: exact match, per answer digit, by operand length, the share that
follows the study's OOD rule; a checkpoint's evaluation sets and scores, its snapshots re-scored.

Answers come from :func:`~mechinterp_arith.core.decoding.generate` (the fastest exact path), or are
checked without generating by :func:`~mechinterp_arith.core.decoding.greedy_matches`.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.ood_both(ckpt.task, m=4, n=1000)
>>> acc = accuracy(ckpt.model, ckpt.task, a, b)
>>> sorted(acc)
['exact', 'n', 'per_digit']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from . import data
from .checkpoint import Checkpoint
from .data import Pairs
from .decoding import DEFAULT_BATCH, generate, greedy_matches
from .numbers import OperandsLike, Values, as_operands, digit_count
from .tasks import Task
from .train_config import TrainConfig
from .widening import check_readable


def score(task: Task, predicted: OperandsLike, target: OperandsLike) -> dict[str, Any]:
    """Exact match and per-digit accuracy (digit 0 = units) of integer answers."""
    predicted, target = as_operands(predicted, "predicted"), as_operands(target, "target")
    if len(target) == 0:
        return {"n": 0, "exact": float("nan"), "per_digit": []}
    return scores_of(len(target), *correct_counts(task, predicted, target))


def correct_counts(task: Task, predicted: Values, target: Values) -> tuple[int, Int[Tensor, " digit"]]:
    """How many answers are exact, and how many are right in each answer digit (units first)."""
    pred_digits, true_digits = task.answer_digits(predicted), task.answer_digits(target)
    return int((predicted == target).sum()), ((pred_digits == true_digits) & (pred_digits >= 0)).sum(0)


def scores_of(n: int, exact: int, correct: Int[Tensor, " digit"]) -> dict[str, Any]:
    """``{"n", "exact", "per_digit"}`` from the counts of :func:`correct_counts` over ``n`` pairs."""
    return {"n": n, "exact": round(exact / n, 6), "per_digit": [round(x / n, 6) for x in correct.tolist()]}


def accuracy(
    model: TransformerBridge,
    task: Task,
    a: OperandsLike,
    b: OperandsLike,
    batch_size: int = DEFAULT_BATCH,
    progress: tqdm[Any] | None = None,
) -> dict[str, Any]:
    """``{"n", "exact", "per_digit"}`` of the model's greedy answers against the true ones.

    Decoded and scored ``batch_size`` pairs at a time: memory is bounded by ``batch_size``, not by
    the number of pairs (the same figures as scoring all at once). ``progress``: a tqdm bar the
    pairs done are added to."""
    a, b = as_operands(a), as_operands(b)
    if len(a) == 0:
        return score(task, a, b)
    exact, correct = 0, torch.zeros(task.answer_width, dtype=torch.long)
    for i in range(0, len(a), batch_size):
        ca, cb = a[i : i + batch_size], b[i : i + batch_size]
        chunk_exact, chunk_correct = correct_counts(
            task, generate(model, task, ca, cb, batch_size).answers, task.apply(ca, cb)
        )
        exact, correct = exact + chunk_exact, correct + chunk_correct
        if progress is not None:
            progress.update(len(ca))
    return scores_of(len(a), exact, correct)


def _mask(x: Bool[np.ndarray, " batch"]) -> Bool[Tensor, " batch"]:
    return torch.from_numpy(np.asarray(x, dtype=bool))


def answer_rates(
    model: TransformerBridge | None,
    task: Task,
    a: OperandsLike,
    b: OperandsLike,
    answers: OperandsLike | None = None,
) -> dict[str, Any]:
    """``{"n", "exact", "equivalent"}``: the share of greedy answers equal to the true answer and to the
    study's OOD rule (:meth:`~mechinterp_arith.core.tasks.Task.equivalent_answer`, e.g. (a mod 10^3) +
    (b mod 10^3)). ``answers``: the greedy answers when already decoded; else they are checked by
    teacher forcing (:func:`~mechinterp_arith.core.decoding.greedy_matches`, no generation), and
    ``model`` may be None only when ``answers`` is given.

    >>> from mechinterp_arith import load, data
    >>> ckpt = load("add3")
    >>> rates = answer_rates(ckpt.model, ckpt.task, *data.ood_both(ckpt.task, 4, 500))
    >>> rates["exact"] < 0.05 < 0.85 < rates["equivalent"]
    True
    """
    a, b = as_operands(a), as_operands(b)
    truth, rule = task.apply(a, b), task.equivalent_answer(a, b)
    if answers is None:
        if model is None:
            raise ValueError("answer_rates needs a model or the decoded answers")
        exact, equivalent = greedy_matches(model, task, a, b, [truth, rule])
    else:
        answers = as_operands(answers, "answers")
        exact, equivalent = _mask(answers == truth), _mask(answers == rule)
    nan = float("nan")
    return {
        "n": len(a),
        "exact": exact.float().mean().item() if len(a) else nan,
        "equivalent": equivalent.float().mean().item() if len(a) else nan,
    }


def accuracy_by_length(
    model: TransformerBridge, task: Task, a: OperandsLike, b: OperandsLike, batch_size: int = DEFAULT_BATCH
) -> dict[tuple[int, int], dict[str, Any]]:
    """Per ``(digits of a, digits of b)`` cell present in the set: :func:`score` of the greedy answers
    (decoded ``batch_size`` pairs at a time) plus ``equivalent``, the share following the study's OOD
    rule (:func:`answer_rates`)."""
    a, b = as_operands(a), as_operands(b)
    predicted = np.concatenate(
        [as_operands([])]
        + [
            generate(model, task, a[i : i + batch_size], b[i : i + batch_size], batch_size).answers
            for i in range(0, len(a), batch_size)
        ]
    )
    target = task.apply(a, b)
    la, lb = digit_count(a), digit_count(b)
    out = {}
    for i, j in sorted(set(zip(la.tolist(), lb.tolist()))):
        mask = ((la == i) & (lb == j)).numpy()
        rates = answer_rates(model, task, a[mask], b[mask], answers=predicted[mask])
        out[(i, j)] = {**score(task, predicted[mask], target[mask]), "equivalent": rates["equivalent"]}
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


def eval_sets(ckpt: Checkpoint, n: int, seed: int = 0) -> dict[str, Pairs]:
    """``{"id": (a, b), "ood": (a, b)}``: the checkpoint's first ``n`` held-out ID pairs
    (:func:`held_out_pairs`) and ``n`` pairs with both operands of the default OOD length
    (:func:`~mechinterp_arith.core.data.default_ood_digits`); no ``"ood"`` when the format holds none."""
    a, b, _ = held_out_pairs(ckpt, n, seed)
    sets: dict[str, Pairs] = {"id": (a, b)}
    m = data.default_ood_digits(ckpt.task)
    if m is not None:
        sets["ood"] = data.ood_both(ckpt.task, m, n, seed=seed)
    return sets


def snapshot_scores(ckpt: Checkpoint, n: int = 1000, seed: int = 0, steps: Iterable[int] | None = None) -> pd.DataFrame:
    """Every training snapshot (``steps``, default all) and the final model (when its step is no
    snapshot) re-scored on :func:`eval_sets`: one row per step with ``id_exact``, and ``ood_exact``
    and ``ood_equivalent`` (the share of OOD answers following the study's rule) when the format
    holds a longer operand.

    >>> scores = snapshot_scores(load("add3"), n=200)                   # doctest: +SKIP
    >>> scores.columns.tolist()                                          # doctest: +SKIP
    ['step', 'id_exact', 'ood_exact', 'ood_equivalent']
    """
    sets = eval_sets(ckpt, n, seed)
    available = ckpt.snapshot_steps()
    steps = available if steps is None else list(steps)
    models: list[tuple[int, TransformerBridge | None]] = [(s, None) for s in steps]
    final_step = int(ckpt.history[-1]["step"]) if ckpt.history else None
    if steps == available and final_step is not None and final_step not in steps:
        models.append((final_step, ckpt.model))
    rows = []
    for step, model in models:
        model = ckpt.load_snapshot(step) if model is None else model
        row = {"step": step, "id_exact": answer_rates(model, ckpt.task, *sets["id"])["exact"]}
        if "ood" in sets:
            r = answer_rates(model, ckpt.task, *sets["ood"])
            row["ood_exact"], row["ood_equivalent"] = r["exact"], r["equivalent"]
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_checkpoint(
    ckpt: Checkpoint,
    ood_digits: Sequence[int] = (),
    n: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    stop_below: float | None = None,
) -> dict[str, Any]:
    """The ``mechinterp-arith evaluate --json`` object: ID and per-length OOD accuracy.

    ``n`` caps the ID set and sizes each OOD set (default 10,000); OOD key ``"m"`` means both
    operands have exactly m digits; each must be longer than the trained length (``data.check_ood_digits``).
    Lengths past the format's width are read in a format of width m (:meth:`Checkpoint.for_length`;
    NotApplicable, before any work, where the scheme cannot). ``stop_below``: no OOD length is scored
    after the first whose exact match is below it. Memory is bounded by ``batch_size`` (:func:`accuracy`).
    ``progress``: a progress bar of the pairs scored on stderr (on a terminal).
    """
    if n is not None:
        data.check_count(n, "n")
    ms = sorted(data.check_ood_digits(ckpt.task, ood_digits, wider=True)) if ood_digits else []
    if ms:
        check_readable(ckpt.model_config, ckpt.task, ms[-1])
    a, b, source = held_out_pairs(ckpt, n, seed)
    n_ood = 10_000 if n is None else n
    with tqdm(
        total=len(a) + n_ood * len(ms), desc=f"evaluate {ckpt.name}", unit="pair", disable=None if progress else True
    ) as bar:
        result: dict[str, Any] = {
            "checkpoint": str(ckpt.path) if ckpt.path is not None else ckpt.name,
            "task": ckpt.task.name,
            "format": ckpt.task.format,
            "train_digits": ckpt.task.digits,
            "id": {**accuracy(ckpt.model, ckpt.task, a, b, batch_size, bar), "source": source},
            "ood": {},
        }
        for m in ms:
            at = ckpt.for_length(m)
            oa, ob = data.ood_both(at.task, m, n_ood, seed=seed)
            result["ood"][str(m)] = accuracy(at.model, at.task, oa, ob, batch_size, bar)
            if stop_below is not None and result["ood"][str(m)]["exact"] < stop_below:
                break
    return result
