"""Repair without retraining: interventions at inference, through TransformerLens hooks, scored on
operand lengths past what a model was trained on (issue 24, item 4; docs/length_generalisation.md).

An :class:`Intervention` is a name, its parameters and a builder that turns a model's task into
TL forward hooks ``[(hook name, fn)]``; :func:`combine` joins interventions (their hooks all fire).
Built from parameters:

- :func:`attention_scaling`: attention logits (pre-softmax scores) times ``factor``, in every layer
  or the ones given. The bridges of ``boot_native`` run only ``hook_pattern`` inside the attention
  (``hook_attn_scores`` fires after the fact with the pattern, so edits there change nothing); the
  edit is made there, exactly: ``softmax(f s) = p^f / sum(p^f)`` with ``p = softmax(s)``, so masked
  keys (``p = 0``) stay masked. ``factor`` must be > 0.
- :func:`position_remap`: the position IDs at ``pos_embed.hook_in`` mapped by a function of the IDs:
  :func:`clamp_places` (learned-style index IDs: operand digits past the trained places read the
  ID of the top trained place), :func:`clamp_ids` (abacus / coupling: IDs past the trained range
  clamped to its top), :func:`interpolate_ids` (IDs scaled back into the trained range, rounded;
  coupling's shared IDs stay shared).
- :func:`readout_attention`: the study's mechanism says the extra digit reaches the residual stream
  and is ignored at readout (docs/findings.md): attention logits from the position predicting
  answer digit k (k >= the trained length) to a_k and b_k (``"read"``), and from b_k to a_k
  (``"gather"``), raised by ``bias``
  (``p_j e^bias``, renormalised: the same as adding ``bias`` to the scores).

:func:`repair_table` scores interventions with the greedy answers decoded *with* the hooks
(:func:`~mechinterp_arith.core.decoding.generate` takes the bridge path whenever hooks are attached)
through :func:`~mechinterp_arith.analysis.relation_by_length.relations_by_length`: exact match, the
truncated relation, the best relation and per-digit accuracy (``first_extra_digit``,
``extra_digits``: the exact rate of the answer digits whose true value needs the extra operand
digits, "does it use the digit"; chance is about 0.1).

>>> from mechinterp_arith import load
>>> ckpt = load("add3")
>>> table = repair_table(ckpt.model, ckpt.task, [NO_INTERVENTION, attention_scaling(2.0)], [4], n=300)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities import get_act_name

from ..core.decoding import generate
from ..core.numbers import Values
from ..core.position_schemes import POSITION_IDS_HOOK
from ..core.positions import answer_logit_pos, operand_pos
from ..core.tasks import Task
from .relation_by_length import relations_by_length

HookFn = Callable[[Tensor, Any], Tensor]
Hooks = list[tuple[str, HookFn]]


def no_hooks(task: Task, n_layers: int) -> Hooks:
    """The builder of no intervention: no hooks."""
    return []


@dataclass(frozen=True)
class Intervention:
    """A named set of TL forward hooks built from parameters for a model's task.

    ``build(task, n_layers)`` returns ``[(hook name, fn)]``; ``kind`` groups interventions in tables."""

    name: str
    kind: str
    params: dict[str, Any]
    build: Callable[[Task, int], Hooks] = field(repr=False, compare=False)

    def hooks(self, model: TransformerBridge, task: Task) -> Hooks:
        """The hooks for ``model`` answering ``task``."""
        return self.build(task, model.cfg.n_layers)


NO_INTERVENTION = Intervention("none", "none", {}, no_hooks)


def combine(*interventions: Intervention) -> Intervention:
    """One intervention whose hooks are all of theirs, in order."""
    name = " + ".join(i.name for i in interventions)
    params = {i.name: i.params for i in interventions}
    return Intervention(
        name, "combined", params, lambda task, n_layers: [h for i in interventions for h in i.build(task, n_layers)]
    )


def _layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    chosen = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    for layer in chosen:
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")
    return chosen


def _layers_label(layers: Sequence[int] | None) -> str:
    return "all layers" if layers is None else "layer " + ",".join(str(x) for x in layers)


# ---- (a) attention-logit scaling ---------------------------------------------------------------------
def scale_pattern(pattern: Float[Tensor, "batch head q k"], factor: float) -> Float[Tensor, "batch head q k"]:
    """The attention pattern the scores times ``factor`` give: ``p^f / sum_k p^f`` (0 stays 0 for f > 0)."""
    scaled = pattern.clamp_min(0).pow(factor)
    total = scaled.sum(-1, keepdim=True)
    return torch.where(total > 0, scaled / total.clamp_min(torch.finfo(pattern.dtype).tiny), pattern)


def attention_scaling(factor: float, layers: Sequence[int] | None = None) -> Intervention:
    """Attention logits times ``factor`` (> 0) in ``layers`` (default all): 1 changes nothing,
    > 1 sharpens, < 1 flattens."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"the attention scaling factor must be a finite number > 0, got {factor!r}")

    def fn(pattern: Tensor, hook: Any) -> Tensor:
        return scale_pattern(pattern, float(factor))

    def build(task: Task, n_layers: int) -> Hooks:
        return [(get_act_name("pattern", layer), fn) for layer in _layers(layers, n_layers)]

    label = _layers_label(layers)
    return Intervention(f"scale x{factor:g} ({label})", "attention scaling", {"factor": factor, "layers": label}, build)


# ---- (b) position-ID remapping -----------------------------------------------------------------------
IdMap = Callable[[Int[Tensor, "batch pos"]], Int[Tensor, "batch pos"]]


def position_remap(name: str, make_map: Callable[[Task], IdMap], params: dict[str, Any] | None = None) -> Intervention:
    """The position IDs at ``pos_embed.hook_in`` replaced by ``make_map(task)(ids)``."""

    def build(task: Task, n_layers: int) -> Hooks:
        id_map = make_map(task)
        return [(POSITION_IDS_HOOK, lambda ids, hook: id_map(ids))]

    return Intervention(name, "position remap", dict(params or {}), build)


def place_table(task: Task, trained_digits: int, seq: int) -> Int[Tensor, " seq"]:
    """Index IDs ``0..seq-1`` with each operand digit at a place >= ``trained_digits`` mapped to the ID
    of that operand's digit at place ``trained_digits - 1`` (the top trained place)."""
    table = torch.arange(seq)
    for operand in ("a", "b"):
        top = operand_pos(task, operand, trained_digits - 1)
        for place in range(trained_digits, task.width):
            if operand_pos(task, operand, place) < seq:
                table[operand_pos(task, operand, place)] = top
    return table


def clamp_places(trained_digits: int) -> Intervention:
    """Index-ID models (learned): operand digits past the trained places read the top trained place's ID."""

    def make_map(task: Task) -> IdMap:
        def id_map(ids: Tensor) -> Tensor:
            table = place_table(task, trained_digits, int(ids.max()) + 1).to(ids.device)
            return table[ids]

        return id_map

    return position_remap(f"clamp places >= {trained_digits}", make_map, {"trained_digits": trained_digits})


def clamp_ids(limit: int) -> Intervention:
    """Ruled IDs (abacus, coupling): every ID above ``limit`` read as ``limit``."""
    return position_remap(f"clamp IDs > {limit}", lambda task: lambda ids: ids.clamp(max=limit), {"limit": limit})


def interpolate_ids(limit: int) -> Intervention:
    """Ruled IDs: each row whose largest ID passes ``limit`` scaled by ``limit / max`` and rounded
    (position interpolation on a learned table); rows within the range unchanged."""

    def id_map(ids: Tensor) -> Tensor:
        top = ids.amax(-1, keepdim=True).clamp_min(1)
        scaled = torch.round(ids.double() * limit / top).long()
        return torch.where(top > limit, scaled, ids)

    return position_remap(f"interpolate IDs into 0..{limit}", lambda task: id_map, {"limit": limit})


# ---- (c) the readout reads the extra digit -------------------------------------------------------------
READOUT_PARTS = ("read", "gather")


def readout_pairs(
    task: Task, trained_digits: int, seq: int, parts: Sequence[str] = READOUT_PARTS
) -> list[tuple[int, list[int]]]:
    """``(query, keys)`` for each place ``trained_digits <= k < width``: ``"read"``, the position
    predicting answer digit k -> a_k, b_k; ``"gather"``, the later of a_k, b_k -> the earlier (queries
    and keys below ``seq``)."""
    unknown = set(parts) - set(READOUT_PARTS)
    if unknown or not parts:
        raise ValueError(f"readout parts must be among {', '.join(READOUT_PARTS)}, got {list(parts)}")
    pairs = []
    for k in range(trained_digits, task.width):
        a_k, b_k = operand_pos(task, "a", k), operand_pos(task, "b", k)
        if "read" in parts:
            pairs.append((answer_logit_pos(task, k), [a_k, b_k]))
        if "gather" in parts:
            pairs.append((max(a_k, b_k), [min(a_k, b_k)]))
    return [(q, [k for k in keys if k <= q]) for q, keys in pairs if q < seq]


def boost_keys(
    pattern: Float[Tensor, "batch head q k"], pairs: list[tuple[int, list[int]]], bias: float
) -> Float[Tensor, "batch head q k"]:
    """``pattern`` with the attention logits of each ``(query, keys)`` pair raised by ``bias``."""
    out = pattern.clone()
    for q, keys in pairs:
        row = out[:, :, q]
        row[:, :, keys] = row[:, :, keys] * math.exp(bias)
        out[:, :, q] = row / row.sum(-1, keepdim=True).clamp_min(torch.finfo(pattern.dtype).tiny)
    return out


def readout_attention(
    trained_digits: int, bias: float, layers: Sequence[int] | None = None, parts: Sequence[str] = READOUT_PARTS
) -> Intervention:
    """Attention logits raised by ``bias`` in ``layers`` (default all), places >= ``trained_digits``:
    from each extra answer digit's predicting position to a_k and b_k (``"read"``) and from b_k to
    a_k (``"gather"``; :func:`readout_pairs`)."""
    readout_pairs(Task("add", 1), 0, 0, parts)  # a bad part fails here, before any model runs

    def build(task: Task, n_layers: int) -> Hooks:
        def fn(pattern: Tensor, hook: Any) -> Tensor:
            return boost_keys(pattern, readout_pairs(task, trained_digits, pattern.shape[-1], parts), bias)

        return [(get_act_name("pattern", layer), fn) for layer in _layers(layers, n_layers)]

    label = _layers_label(layers) + ("" if tuple(parts) == READOUT_PARTS else ", " + "+".join(parts))
    return Intervention(
        f"readout +{bias:g} ({label})",
        "readout attention",
        {"bias": bias, "layers": label, "parts": list(parts)},
        build,
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if len(values) else float("nan")


# ---- scoring -------------------------------------------------------------------------------------------
def hooked_answers(
    model: TransformerBridge, task: Task, intervention: Intervention
) -> Callable[[Values, Values], Values]:
    """``(a, b) -> greedy answers`` decoded with the intervention's hooks attached (the bridge path)."""

    def answers(a: Values, b: Values) -> Values:
        hooks = intervention.hooks(model, task)
        if not hooks:
            return generate(model, task, a, b).answers
        with model.hooks(fwd_hooks=hooks):
            return generate(model, task, a, b, path="bridge").answers

    return answers


def repair_table(
    model: TransformerBridge,
    task: Task,
    interventions: Sequence[Intervention],
    lengths: Sequence[int],
    n: int = 300,
    seed: int = 0,
    trained_digits: int | None = None,
) -> pd.DataFrame:
    """One row per intervention x operand length (both operands exactly m digits, ``n`` pairs, the
    same pairs for every intervention): ``exact``, ``truncated``, ``best``, ``best_coverage`` (with
    95% Wilson bounds), ``per_digit``, ``first_extra_digit`` (the exact rate of answer digit
    ``trained_digits``, default ``task.digits``), ``extra_digits`` (its mean over answer digits
    ``trained_digits .. m - 1``, whose true values need the extra operand digits) and ``gain``
    (``exact`` minus the ``"none"`` intervention's at the same length)."""
    n_train = task.digits if trained_digits is None else trained_digits
    frames = []
    for intervention in interventions:
        table = relations_by_length(task, hooked_answers(model, task, intervention), lengths, n, seed)
        table = table.reset_index()
        table.insert(0, "intervention", intervention.name)
        table.insert(1, "kind", intervention.kind)
        table["params"] = pd.Series([intervention.params] * len(table), index=table.index, dtype=object)
        table["first_extra_digit"] = [d[n_train] if len(d) > n_train else float("nan") for d in table["per_digit"]]
        table["extra_digits"] = [_mean(d[n_train:m]) for d, m in zip(table["per_digit"], table["m"])]
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    base = out[out["kind"] == "none"].set_index("m")["exact"]
    out["gain"] = [e - base.get(m, float("nan")) for e, m in zip(out["exact"], out["m"])]
    return out
