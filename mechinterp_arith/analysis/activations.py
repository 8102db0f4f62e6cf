"""Collect activations at hook x position in batches, with teacher-forced answer tokens.

Shared by the PCA, logit-lens and matching analyses. Positions are indices into the model's
input (``task.n_ctx`` tokens: the prompt and all answer tokens but the last), named and resolved
by :mod:`mechinterp_arith.core.positions`.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.random_pairs(ckpt.task, 100)
>>> acts = collect(ckpt, a, b, ["ln_final.hook_out"], ["units"])      # the position predicting the units digit
>>> acts["ln_final.hook_out"].shape                          # [batch, positions, d_model]
torch.Size([100, 1, 48])
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities import get_act_name

from ..core.checkpoint import Checkpoint
from ..core.decoding import generate
from ..core.model import model_device
from ..core.numbers import OperandsLike, as_operands
from ..core.positions import require_fixed_length, resolve_position, write_answers
from ..core.tasks import Task
from .choices import ANSWER_SOURCES, DEFAULT_HOOK

DEFAULT_BATCH = 2048
# what fills the answer slots of the input: one of ANSWER_SOURCES (analysis/choices.py), or explicit integers
Answers = str | OperandsLike  # a source name, or explicit answers


def resolve_hook(model: TransformerBridge, name: str) -> str:
    """The model's hook point for ``name``: a full TL hook name or TL shorthand (``"k1"``,
    ``"pattern0"``, ``"resid_pre"`` is not shorthand: give its layer, ``blocks.0.hook_resid_pre``);
    a ValueError naming it and near matches when the model has no such hook."""
    hooks = model.hook_dict
    full = get_act_name(name) if isinstance(name, str) else name
    if full in hooks:
        return full
    close = difflib.get_close_matches(name, list(hooks), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; e.g. {DEFAULT_HOOK}, blocks.0.hook_resid_post"
    raise ValueError(f"unknown hook {name!r}{hint}")


def residual_hooks(model: TransformerBridge) -> list[str]:
    """Every distinct residual-stream state, in order: ``blocks.l.hook_resid_pre`` and ``_mid`` for
    each layer, then the last ``hook_resid_post`` (``blocks.l.hook_resid_post`` equals
    ``blocks.{l+1}.hook_resid_pre``)."""
    L = model.cfg.n_layers
    names = [get_act_name(f"resid_{s}", l) for l in range(L) for s in ("pre", "mid")]
    return names + [get_act_name("resid_post", L - 1)]


def input_tokens(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    answers: Answers = "true",
    batch_size: int = DEFAULT_BATCH,
    model: TransformerBridge | None = None,
) -> Int[Tensor, "batch n_ctx"]:
    """The model's input for each pair: prompt, then the answer digits named by ``answers``
    ("true", "greedy" (of ``model``, default ``ckpt.model``), "representative" or explicit
    integers), truncated to ``task.n_ctx``."""
    task = ckpt.task
    require_fixed_length(task)
    a, b = as_operands(a), as_operands(b)
    tokens, _ = task.encode_batch(a, b)
    if isinstance(answers, str):
        if answers not in ANSWER_SOURCES:
            raise ValueError(
                f"unknown answer source {answers!r}; choose one of {', '.join(ANSWER_SOURCES)} or pass integers"
            )
        if answers == "true":
            return tokens[:, : task.n_ctx]
        if answers == "greedy":
            return generate(ckpt.model if model is None else model, task, a, b, batch_size).tokens[:, : task.n_ctx]
        values = task.equivalent_answer(a, b)
    else:
        values = as_operands(answers, "answers")
    if values.shape != a.shape:
        raise ValueError(f"need one answer per pair: got {tuple(values.shape)} for {len(a)} pairs")
    return write_answers(task, tokens, values)[:, : task.n_ctx]


def needs_answer_tokens(task: Task, positions: Sequence[int]) -> bool:
    """Whether any position sees answer tokens (the model is causal: prompt positions do not)."""
    return max(positions) >= task.prompt_len


@torch.inference_mode()
def collect(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    hooks: Sequence[str] = (DEFAULT_HOOK,),
    positions: Sequence[int | str] | None = None,
    answers: Answers = "true",
    model: TransformerBridge | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, Float[Tensor, "batch pos d"]]:
    """Activations ``{hook: [batch, len(positions), ...]}`` on the CPU (float32).

    ``positions`` (default: all) are resolved with :func:`resolve_position`; ``answers`` fills the
    answer slots (ignored when every position lies in the prompt). ``model`` overrides
    ``ckpt.model`` (e.g. a training snapshot).
    """
    task = ckpt.task
    model = ckpt.model if model is None else model
    hooks = [resolve_hook(model, h) for h in hooks]
    pos = list(range(task.n_ctx)) if positions is None else [resolve_position(task, p) for p in positions]
    if not pos:
        raise ValueError("no positions given")
    a, b = as_operands(a), as_operands(b)
    if len(a) == 0:
        raise ValueError("no operand pairs given")
    if needs_answer_tokens(task, pos):
        tokens = input_tokens(ckpt, a, b, answers, batch_size, model)
        width = task.n_ctx
    else:
        task.check_operands(a, b)
        tokens, _ = task.encode_batch(a, b)
        width = max(pos) + 1  # causal: later tokens cannot change these positions
    tokens = tokens[:, :width]
    device = model_device(model)
    index = torch.tensor(pos)
    out: dict[str, list[Tensor]] = {h: [] for h in hooks}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(tokens), batch_size):
            _, cache = model.run_with_cache(tokens[i : i + batch_size].to(device), names_filter=hooks)
            for h in hooks:
                dim = 2 if h.endswith(("hook_pattern", "hook_attn_scores")) else 1  # [batch, head, query, key]
                out[h].append(cache[h].index_select(dim, index.to(device)).movedim(dim, 1).float().cpu())
    finally:
        model.train(was_training)
    return {h: torch.cat(v) for h, v in out.items()}
