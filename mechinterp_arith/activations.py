"""Collect activations at hook x position in batches, with teacher-forced answer tokens.

Shared by the PCA, logit-lens and matching analyses. Positions are indices into the model's
input (``task.n_ctx`` tokens: the prompt and all answer tokens but the last); the position whose
logits predict answer digit ``k`` (the 10^k place) is :func:`predicting_position`.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.random_pairs(ckpt.task, 100)
>>> acts = collect(ckpt, a, b, ["ln_final.hook_out"], [predicting_position(ckpt.task, 0)])
>>> acts["ln_final.hook_out"].shape                          # [batch, positions, d_model]
torch.Size([100, 1, 48])
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .evaluate import generate
from .tasks import Task, _as_long, digits_of

DEFAULT_HOOK = "ln_final.hook_out"
DEFAULT_BATCH = 2048
# what fills the answer slots of the input: the true answer, the model's greedy answer, the answer of
# the ID representative (a mod 10^n, b mod 10^n), or explicit integers
Answers = Union[str, Tensor, Sequence[int]]
ANSWER_SOURCES = ("true", "greedy", "representative")


def require_fixed_length(task: Task) -> None:
    """ValueError unless the task's format has fixed token positions (analyses index positions)."""
    if not task.fixed_length:
        raise ValueError(
            f"representation analyses need a fixed-length format (pad=True); task {task.name} in format "
            f"{task.format!r} is unpadded"
        )


def predicting_position(task: Task, k: int) -> int:
    """The input position whose logits predict answer digit ``k`` (k = 0: units digit).

    >>> predicting_position(Task("add", 3), 0), predicting_position(Task("add", 3), 5)   # paper, W=5
    (9, 14)
    """
    require_fixed_length(task)
    if not 0 <= k < task.answer_width:
        raise ValueError(f"answer digit {k} does not exist: {task.name} answers have {task.answer_width} digits (0..{task.answer_width - 1})")
    slot = k if task.answer_lsb_first else task.answer_width - 1 - k
    return task.prompt_len - 1 + slot


def answer_positions(task: Task) -> list[int]:
    """The positions predicting answer digits 0, 1, ... (units first)."""
    return [predicting_position(task, k) for k in range(task.answer_width)]


def predicted_digit(task: Task, position: int) -> int | None:
    """Which answer digit (10^k place) ``position`` predicts, or None for a prompt position."""
    for k, p in enumerate(answer_positions(task)):
        if p == position:
            return k
    return None


def position_roles(task: Task) -> list[str]:
    """A name for the token at each input position, e.g. ``a[3]`` (the 10^3 digit of a), ``c[0]``.

    >>> position_roles(Task("add", 3))[:6], position_roles(Task("add", 3))[-2:]
    (['a[4]', 'a[3]', 'a[2]', 'a[1]', 'a[0]', 'b[4]'], ['c[3]', 'c[4]'])
    """
    require_fixed_length(task)
    W, A = task.width, task.answer_width
    a = [f"a[{i}]" for i in range(W - 1, -1, -1)]
    b = [f"b[{i}]" for i in range(W - 1, -1, -1)]
    c = [f"c[{i}]" for i in (range(A) if task.answer_lsb_first else range(A - 1, -1, -1))]
    roles = a + b + c if task.format == "paper" else a + [task.symbol] + b + ["="] + c
    return roles[: task.n_ctx]


def resolve_position(task: Task, position: int | str | None) -> int:
    """An input position from an int (negative counts from the end), ``"units"`` or ``"ans{k}"``
    (the position predicting answer digit k); None = ``"units"``. ValueError names a bad one."""
    require_fixed_length(task)
    if position is None:
        return predicting_position(task, 0)
    if isinstance(position, str):
        s = position.strip()
        if s == "units":
            return predicting_position(task, 0)
        m = re.fullmatch(r"ans(\d+)", s)
        if m:
            return predicting_position(task, int(m.group(1)))
        if re.fullmatch(r"-?\d+", s):
            position = int(s)
        else:
            raise ValueError(f"unknown position {position!r}: use an index in [0, {task.n_ctx}), 'units' or 'ans<k>'")
    p = int(position)
    if not -task.n_ctx <= p < task.n_ctx:
        raise ValueError(f"position {p} is outside the model's input of {task.n_ctx} tokens (0..{task.n_ctx - 1})")
    return p % task.n_ctx


def resolve_hook(model, name: str) -> str:
    """``name`` if the model has that hook point, else a ValueError naming it and near matches."""
    hooks = model.hook_dict
    if name in hooks:
        return name
    close = difflib.get_close_matches(name, list(hooks), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; e.g. {DEFAULT_HOOK}, blocks.0.hook_resid_post"
    raise ValueError(f"unknown hook {name!r}{hint}")


def residual_hooks(model) -> list[str]:
    """Every distinct residual-stream state, in order: ``blocks.l.hook_resid_pre`` and ``_mid`` for
    each layer, then the last ``hook_resid_post`` (``blocks.l.hook_resid_post`` equals
    ``blocks.{l+1}.hook_resid_pre``)."""
    L = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_{s}" for l in range(L) for s in ("pre", "mid")]
    return names + [f"blocks.{L - 1}.hook_resid_post"]


def representatives(task: Task, a: Int[Tensor, "batch"], b: Int[Tensor, "batch"]) -> tuple[Int[Tensor, "batch"], Int[Tensor, "batch"]]:
    """The ID representative of each pair: :meth:`Task.id_representative`."""
    return task.id_representative(a, b)


def equivalent_answer(task: Task, a: Int[Tensor, "batch"], b: Int[Tensor, "batch"]) -> Int[Tensor, "batch"]:
    """``(a mod 10^n) op (b mod 10^n)``: the answer of the ID representative."""
    return task.apply(*representatives(task, a, b))


def input_tokens(ckpt, a, b, answers: Answers = "true", batch_size: int = DEFAULT_BATCH, model=None) -> Int[Tensor, "batch n_ctx"]:
    """The model's input for each pair: prompt, then the answer digits named by ``answers``
    ("true", "greedy" (of ``model``, default ``ckpt.model``), "representative" or explicit
    integers), truncated to ``task.n_ctx``."""
    task = ckpt.task
    require_fixed_length(task)
    a, b = _as_long(a), _as_long(b)
    tokens, _ = task.encode_batch(a, b)
    if isinstance(answers, str):
        if answers not in ANSWER_SOURCES:
            raise ValueError(f"unknown answer source {answers!r}; choose one of {', '.join(ANSWER_SOURCES)} or pass integers")
        if answers == "true":
            return tokens[:, : task.n_ctx]
        if answers == "greedy":
            return generate(ckpt.model if model is None else model, task, a, b, batch_size).tokens[:, : task.n_ctx]
        answers = equivalent_answer(task, a, b)
    values = _as_long(answers)
    if values.shape != a.shape:
        raise ValueError(f"need one answer per pair: got {tuple(values.shape)} for {len(a)} pairs")
    if (values < 0).any() or (values >= 10**task.answer_width).any():
        raise ValueError(f"answers must lie in [0, 10^{task.answer_width}) to fit the format")
    digits = digits_of(values, task.answer_width)
    if task.answer_lsb_first:
        digits = digits.flip(-1)
    tokens[:, task.prompt_len : task.prompt_len + task.answer_width] = digits
    return tokens[:, : task.n_ctx]


def needs_answer_tokens(task: Task, positions: Sequence[int]) -> bool:
    """Whether any position sees answer tokens (the model is causal: prompt positions do not)."""
    return max(positions) >= task.prompt_len


@torch.inference_mode()
def collect(
    ckpt,
    a: Int[Tensor, "batch"],
    b: Int[Tensor, "batch"],
    hooks: Sequence[str] = (DEFAULT_HOOK,),
    positions: Sequence[int | str] | None = None,
    answers: Answers = "true",
    model=None,
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
    a, b = _as_long(a), _as_long(b)
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
    device = next(model.parameters()).device
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


def json_safe(obj):
    """``obj`` with NaN floats replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
