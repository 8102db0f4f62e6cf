"""Batched greedy decoding and accuracy: exact match, per answer digit, by operand length.

Memory is bounded by ``batch_size`` (default 4,096 rows a forward pass), not by the set size.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.ood_both(ckpt.task, m=4, n=1000)
>>> acc = accuracy(ckpt.model, ckpt.task, a, b)
>>> sorted(acc)
['exact', 'n', 'per_digit']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .model import model_device
from .tasks import END, Task, _as_long, digits_of

DEFAULT_BATCH = 4096


@dataclass
class Generation:
    """Greedy outputs for a batch of operand pairs."""

    answers: Int[Tensor, "batch"]  # the model's answers as integers (-1 when unreadable)
    tokens: Int[Tensor, "batch seq"]  # prompt + generated answer tokens (fixed-length formats)


@torch.inference_mode()
def greedy_tokens(model, prompt: Int[Tensor, "batch prompt"], n_new: int) -> Int[Tensor, "batch prompt+n_new"]:
    """Append ``n_new`` greedily chosen tokens to each prompt row (no KV cache; sequences are short)."""
    tokens = prompt
    for _ in range(n_new):
        logits: Float[Tensor, "batch pos vocab"] = model(tokens)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def generate(model, task: Task, a, b, batch_size: int = DEFAULT_BATCH) -> Generation:
    """The model's greedy answers to ``a op b``; inputs on any device, outputs on the CPU."""
    a, b = _as_long(a), _as_long(b)
    task.check_operands(a, b)
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        if task.fixed_length:
            return _generate_fixed(model, task, a, b, batch_size, device)
        return _generate_variable(model, task, a, b, batch_size, device)
    finally:
        model.train(was_training)


def _generate_fixed(model, task: Task, a, b, batch_size: int, device) -> Generation:
    answers, rows = [], []
    for i in range(0, len(a), batch_size):
        tokens, _ = task.encode_batch(a[i : i + batch_size], b[i : i + batch_size])
        out = greedy_tokens(model, tokens[:, : task.prompt_len].to(device), task.answer_width).cpu()
        rows.append(out)
        answers.append(task.decode_answer(out[:, task.prompt_len :]))
    if not rows:
        return Generation(torch.zeros(0, dtype=torch.long), torch.zeros(0, task.prompt_len + task.answer_width, dtype=torch.long))
    return Generation(torch.cat(answers), torch.cat(rows))


def _generate_variable(model, task: Task, a, b, batch_size: int, device) -> Generation:
    tokens, starts = task.encode_batch(a, b)
    answers = torch.full((len(a),), -1, dtype=torch.long)
    for start in starts.unique().tolist():
        idx = torch.nonzero(starts == start).squeeze(1)
        for j in range(0, len(idx), batch_size):
            rows = idx[j : j + batch_size]
            out = greedy_tokens(model, tokens[rows, :start].to(device), task.answer_width + 1).cpu()
            answers[rows] = _read_until_end(out[:, start:], task)
    return Generation(answers, tokens)


def _read_until_end(generated: Int[Tensor, "batch n"], task: Task) -> Int[Tensor, "batch"]:
    values = []
    for row in generated.tolist():
        if END not in row or row.index(END) == 0 or any(t > 9 for t in row[: row.index(END)]):
            values.append(-1)
            continue
        digits = "".join(str(t) for t in row[: row.index(END)])
        values.append(int(digits[::-1] if task.answer_lsb_first else digits))
    return torch.tensor(values, dtype=torch.long)


def score(task: Task, predicted: Int[Tensor, "batch"], target: Int[Tensor, "batch"]) -> dict:
    """Exact match and per-digit accuracy (digit 0 = units) of integer answers."""
    n = len(target)
    if n == 0:
        return {"n": 0, "exact": float("nan"), "per_digit": []}
    A = task.answer_width
    pred_digits = digits_of(predicted.clamp(min=0), A).flip(-1)
    true_digits = digits_of(target, A).flip(-1)
    correct = (pred_digits == true_digits) & (predicted >= 0).unsqueeze(1)
    return {
        "n": n,
        "exact": round((predicted == target).double().mean().item(), 6),
        "per_digit": [round(x, 6) for x in correct.double().mean(0).tolist()],
    }


def accuracy(model, task: Task, a, b, batch_size: int = DEFAULT_BATCH) -> dict:
    """``{"n", "exact", "per_digit"}`` of the model's greedy answers against the true ones."""
    a, b = _as_long(a), _as_long(b)
    predicted = generate(model, task, a, b, batch_size).answers
    return score(task, predicted, task.apply(a, b))


def operand_length(x: Int[Tensor, "batch"]) -> Int[Tensor, "batch"]:
    """Number of decimal digits (0 has one)."""
    return torch.where(x > 0, torch.floor(torch.log10(x.clamp(min=1).double())).long() + 1, torch.ones_like(x))


def accuracy_by_length(model, task: Task, a, b, batch_size: int = DEFAULT_BATCH) -> dict[tuple[int, int], dict]:
    """Accuracy per (len(a), len(b)) cell present in the set."""
    a, b = _as_long(a), _as_long(b)
    predicted = generate(model, task, a, b, batch_size).answers
    target = task.apply(a, b)
    la, lb = operand_length(a), operand_length(b)
    out = {}
    for i, j in sorted(set(zip(la.tolist(), lb.tolist()))):
        mask = (la == i) & (lb == j)
        out[(i, j)] = score(task, predicted[mask], target[mask])
    return out


def held_out_pairs(ckpt, n: int | None = None, seed: int = 0) -> tuple[Int[Tensor, "n"], Int[Tensor, "n"], str]:
    """ID pairs to score a checkpoint on: its own held-out test split when its training recorded one
    (first ``n`` of it), else ``n`` (default 10,000) random n-digit pairs. Returns ``(a, b, source)``."""
    from . import data
    from .train import TrainConfig

    training = ckpt.config.get("training") or {}
    if training:
        cfg = TrainConfig.from_dict(training)
        split = data.id_split(ckpt.task, cfg.n_train, cfg.n_test, seed=cfg.data_seed)
        if len(split.test_a):
            k = len(split.test_a) if n is None else min(n, len(split.test_a))
            return split.test_a[:k], split.test_b[:k], "held-out test split"
    a, b = data.random_pairs(ckpt.task, 10_000 if n is None else n, seed=seed)
    return a, b, "random n-digit pairs"


def evaluate_checkpoint(ckpt, ood_digits: list[int] = (), n: int | None = None, seed: int = 0,
                        batch_size: int = DEFAULT_BATCH) -> dict:
    """The ``mechinterp-arith evaluate --json`` object: ID and per-length OOD accuracy.

    ``n`` caps the ID set and sizes each OOD set (default 10,000); OOD key ``"m"`` means both
    operands have exactly m digits.
    """
    from . import data

    a, b, source = held_out_pairs(ckpt, n, seed)
    result = {
        "checkpoint": str(ckpt.path) if ckpt.path is not None else ckpt.name,
        "task": ckpt.task.name,
        "format": ckpt.task.format,
        "train_digits": ckpt.task.digits,
        "id": {**accuracy(ckpt.model, ckpt.task, a, b, batch_size), "source": source},
        "ood": {},
    }
    for m in ood_digits:
        oa, ob = data.ood_both(ckpt.task, m, 10_000 if n is None else n, seed=seed)
        result["ood"][str(m)] = accuracy(ckpt.model, ckpt.task, oa, ob, batch_size)
    return result
