"""Patching metrics: what a patched run is scored by, and the normalised effect of a patch.

A metric maps logits ``[batch, pos, vocab]`` to a scalar (TransformerLens convention) or, with
``per_example``, to ``[batch]``. A metric may declare the logit positions it reads
(:func:`reads_positions`); the batched patching engine then skips work after the last of them.

>>> from mechinterp_arith import Task
>>> from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit
>>> pairs = differ_in_answer_digit(Task("add", 3), k=1, n=8)
>>> metric = logit_diff_metric(pairs, k=1)
>>> metric.reads_positions                               # the position that predicts answer digit 1
(10,)
>>> normalised_effect(torch.tensor([2.0]), clean_value=3.0, corrupted_value=-1.0).tolist()
[0.75]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.positions import answer_logit_pos
from .prompt_pairs import PromptPairs

# a patching metric: logits [batch, pos, vocab] -> a number or one per row
Metric = Callable[[Tensor], Any]


def reads_positions(metric: Metric, positions: Sequence[int]) -> Metric:
    """Declare the logit positions ``metric`` reads; returns the metric.

    A sweep then recomputes positions only up to the last of them, does not run sites after it
    (causally they cannot change the metric: value = baseline, ``PatchResult.after_read``) and passes
    NaN logits at the positions not read, so a wrong declaration shows. It is also checked once
    per sweep: the metric of the corrupted logits must not change when the other positions are
    NaN. The metrics of :mod:`mechinterp_arith.analysis.prompt_pairs` declare theirs.

    >>> metric = reads_positions(lambda logits: logits[:, 10, 3].mean(), [10])
    """
    metric.reads_positions = tuple(sorted({int(p) for p in positions}))  # type: ignore[attr-defined]  # a declared attribute on any callable
    return metric


def infer_read_positions(metric: Metric, logits: Float[Tensor, "batch pos vocab"]) -> tuple[int, ...] | None:
    """The logit positions ``metric`` reads on ``logits``, found by poisoning one position at a time.

    A position counts as unread when the metric's value on ``logits`` stays exactly the same with
    that position's logits set to NaN, shifted by +1e4, reversed along the vocabulary, and set to
    put each vocabulary entry on top in turn (which catches arithmetic reads and argmax or
    comparison reads). None when every position is read or the value is not reproducible. A
    metric whose reads depend on the logits' values (e.g. "read the position of the largest
    logit") can defeat this probe: declare its positions (:func:`reads_positions`) or turn
    inference off (``infer_reads=False``).
    """
    V = logits.shape[-1]
    poisons: list[Callable[[Tensor], object]] = [
        lambda t: t.fill_(float("nan")),
        lambda t: t.add_(1e4),
        lambda t: t.copy_(t.flip(-1)),
    ]
    for v in range(V):

        def on_top(t: Tensor, v: int = v) -> object:
            return t.fill_(-1e4).select(-1, v).fill_(1e4)

        poisons.append(on_top)
    with torch.inference_mode():
        base = torch.as_tensor(metric(logits)).detach()

        def unchanged(positions: list[int], poison: Callable[[Tensor], object]) -> bool:
            probe = logits.clone()
            for p in positions:
                poison(probe[:, p])
            value = torch.as_tensor(metric(probe)).detach()
            return value.shape == base.shape and torch.equal(value, base)

        if not unchanged([], lambda t: t):
            return None
        unread = [p for p in range(logits.shape[1]) if unchanged([p], poisons[0])]
        for poison in poisons[1:]:  # the other poisons on every remaining position at once, one by one if it shows
            if unread and not unchanged(unread, poison):
                unread = [p for p in unread if unchanged([p], poison)]
    read = tuple(p for p in range(logits.shape[1]) if p not in unread)
    return read if 0 < len(read) < logits.shape[1] else None


def logit_diff_metric(pairs: PromptPairs, k: int, per_example: bool = False) -> Callable[[Tensor], Tensor]:
    """logit(clean digit k) - logit(corrupted digit k) at answer position k, mean over the batch.

    Declares that it reads only that position (:func:`reads_positions`).

    >>> metric = logit_diff_metric(pairs, k)            # doctest: +SKIP
    >>> metric(logits)    # logits [batch, pos, vocab] -> scalar (or [batch] with per_example)  # doctest: +SKIP
    """
    pos = answer_logit_pos(pairs.task, k)
    clean = pairs.clean_digits[:, k].view(-1, 1)
    corr = pairs.corrupted_digits[:, k].view(-1, 1)
    if not (clean != corr).any():
        raise ValueError(f"no pair differs in answer digit {k}: the logit difference would be 0 everywhere")

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Tensor:
        lg = logits[:, pos]
        d = lg.gather(1, clean.to(lg.device)) - lg.gather(1, corr.to(lg.device))
        return d.squeeze(1) if per_example else d.mean()

    return reads_positions(metric, [pos])


def correct_prob_metric(pairs: PromptPairs, k: int, per_example: bool = False) -> Callable[[Tensor], Tensor]:
    """Probability of the clean answer digit k at answer position k (mean over the batch); declares
    that it reads only that position."""
    pos = answer_logit_pos(pairs.task, k)
    clean = pairs.clean_digits[:, k].view(-1, 1)

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Tensor:
        p = logits[:, pos].softmax(-1).gather(1, clean.to(logits.device)).squeeze(1)
        return p if per_example else p.mean()

    return reads_positions(metric, [pos])


def normalised_effect(patched: Tensor, clean_value: float | Tensor, corrupted_value: float | Tensor) -> Tensor:
    """``(patched - corrupted) / (clean - corrupted)``: 0 = no effect, 1 = the clean metric restored."""
    clean_value = torch.as_tensor(clean_value, dtype=patched.dtype)
    corrupted_value = torch.as_tensor(corrupted_value, dtype=patched.dtype)
    scale = clean_value - corrupted_value
    if bool((scale == 0).any()):
        raise ValueError("clean and corrupted metrics are equal: the normalised effect is undefined")
    return (patched - corrupted_value) / scale
