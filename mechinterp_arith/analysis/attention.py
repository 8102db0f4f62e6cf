"""Attention patterns: mean attention to operand digits, and an ID input's attention beside that of
the OOD members of its equivalence class.

The study's finding: an OOD input such as 1349+705 is answered as its ID representative 349+705.
If the model ignores the extra digits, its attention at the positions predicting answer digits
should match the representative's too: :func:`class_attention` measures it (total-variation
distance per head). :func:`operand_attention` is the attention from the position predicting answer
digit k to each operand digit, the reading step of the circuits (:mod:`~mechinterp_arith.analysis.circuits`)
and of the length profile (:mod:`~mechinterp_arith.analysis.length_generalisation`).

>>> from mechinterp_arith import load
>>> ckpt = load("add3")
>>> view = class_attention(ckpt, 349, 705)
>>> [f"{a}+{b}" for a, b in view.members][0], len(view.members)
('349+705', 3)
>>> float(view.distance.drop(columns=["a", "b"]).to_numpy().max()) < 0.5
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities import get_act_name

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.decoding import generate
from ..core.model import model_device
from ..core.numbers import OperandsLike, Values, as_operands
from ..core.positions import (
    OPERANDS,
    answer_logit_pos,
    answer_positions,
    operand_pos,
    position_labels,
    require_fixed_length,
)
from ..core.tasks import Task
from .activations import input_tokens

BATCH = 512  # pairs per forward pass when averaging patterns


def pattern_hooks(model: TransformerBridge) -> list[str]:
    """The attention-pattern hook of every layer, in order."""
    return [get_act_name("pattern", l) for l in range(model.cfg.n_layers)]


@torch.inference_mode()
def attention_patterns(model: TransformerBridge, tokens: Int[Tensor, " pos"]) -> Float[Tensor, "layer_head dest src"]:
    """Every head's pattern for one sequence, layers then heads: [n_layers * n_heads, pos, pos] (CPU)."""
    names = pattern_hooks(model)
    _, cache = model.run_with_cache(tokens.unsqueeze(0).to(model_device(model)), names_filter=names)
    return torch.cat([cache[n][0] for n in names]).float().cpu()


@torch.inference_mode()
def mean_attention(ckpt: Checkpoint, a: OperandsLike, b: OperandsLike) -> Float[Tensor, "layer head dest src"]:
    """Each head's attention pattern averaged over the pairs ``(a, b)`` (true answers teacher-forced)."""
    tokens = input_tokens(ckpt, a, b, answers="true")
    names = pattern_hooks(ckpt.model)
    total: Tensor | None = None  # a running sum: memory is bounded by BATCH, not by the number of pairs
    for i in range(0, len(tokens), BATCH):
        _, cache = ckpt.model.run_with_cache(tokens[i : i + BATCH].to(ckpt.device), names_filter=names)
        part = torch.stack([cache[n].double().sum(0) for n in names]).cpu()  # [layer, head, dest, src]
        total = part if total is None else total + part
    if total is None:
        raise ValueError("mean_attention needs at least one pair")
    return (total / len(tokens)).float()


def operand_attention(
    ckpt: Checkpoint, a: OperandsLike, b: OperandsLike, digits: Sequence[int], places: Sequence[int]
) -> pd.DataFrame:
    """Mean attention over the pairs ``(a, b)`` from the position predicting answer digit k (each k of
    ``digits``) to every operand digit (a and b, each place of ``places``; 0 = units), per layer and head.

    Columns: ``layer, head, digit, operand, place, src_pos, attention``.
    """
    task = ckpt.task
    pattern = mean_attention(ckpt, as_operands(a), as_operands(b))  # [layer, head, dest, src]
    rows = []
    for layer in range(pattern.shape[0]):
        for k in digits:
            q = answer_logit_pos(task, k)
            for head in range(pattern.shape[1]):
                for op in OPERANDS:
                    for place in places:
                        src = operand_pos(task, op, place)
                        rows.append(
                            {
                                "layer": layer,
                                "head": head,
                                "digit": k,
                                "operand": op,
                                "place": place,
                                "src_pos": src,
                                "attention": float(pattern[layer, head, q, src]),
                            }
                        )
    return pd.DataFrame(rows)


def token_labels(task: Task, tokens: Int[Tensor, " pos"]) -> list[str]:
    """``label:token`` per position, e.g. ``a4:0 ... b0:5 ans0:4`` (:func:`position_labels`)."""
    return [f"{r}:{task.vocab[t]}" for r, t in zip(position_labels(task), tokens.tolist())]


def class_members(task: Task, a: int, b: int, k: int = 2, seed: int = 0) -> list[tuple[int, int]]:
    """The ID representative of ``(a, b)`` and ``k`` random OOD members of its class
    (:func:`~mechinterp_arith.core.data.class_members`), e.g. 349+705, 41349+90705, ..."""
    ra, rb = (int(x[0]) for x in task.id_representative(as_operands(a), as_operands(b)))
    ma, mb = data.class_members(task, ra, rb, k=k, seed=seed)
    return [(ra, rb)] + list(zip(ma.tolist(), mb.tolist()))


@dataclass
class ClassAttention:
    """An ID input and OOD members of its class: what the model reads and answers, every head's
    pattern, and each member's distance from the representative's pattern."""

    members: list[tuple[int, int]]  # row 0: the ID representative
    tokens: Int[Tensor, "member n_ctx"]  # each input with its own greedy answer (what the model reads)
    answers: Values  # [member] greedy answers
    patterns: list[Float[Tensor, "layer_head dest src"]]  # one per member
    heads: list[str]  # ``L0H0``, ... in the patterns' order
    distance: pd.DataFrame  # per OOD member: a, b, then per head the TV distance (see class_attention)


def class_attention(ckpt: Checkpoint, a: int, b: int, k: int = 2, seed: int = 0) -> ClassAttention:
    """Attention of the ID representative of ``(a, b)`` and of ``k`` OOD members of its class, over
    the sequence each reads while answering (prompt and its own greedy answer digits), and each
    member's largest total-variation distance from the representative's pattern,
    ``max over q of 0.5 * sum_src |p_member[q, src] - p_ID[q, src]|``, over the positions q that
    predict answer digits (0: identical, 1: disjoint), per head. :class:`NotApplicable` when the
    format holds no longer operand or has no fixed positions."""
    task, model = ckpt.task, ckpt.model
    require_fixed_length(task)
    data.require_ood_digits(task)  # NotApplicable: the format holds no longer operand
    members = class_members(task, a, b, k=k, seed=seed)
    gen = generate(model, task, as_operands([m[0] for m in members]), as_operands([m[1] for m in members]))
    tokens = gen.tokens[:, : task.n_ctx]
    patterns = [attention_patterns(model, t) for t in tokens]
    heads = [f"L{l}H{h}" for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    rows = answer_positions(task)
    distance = pd.DataFrame(
        [
            {"a": x, "b": y}
            | {
                name: float(d)
                for name, d in zip(heads, 0.5 * (p[:, rows] - patterns[0][:, rows]).abs().sum(-1).amax(-1))
            }
            for (x, y), p in zip(members[1:], patterns[1:])
        ]
    )
    return ClassAttention(members, tokens, gen.answers, patterns, heads, distance)
