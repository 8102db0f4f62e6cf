"""A model's weights read in a wider format: operands longer than the width it was trained with.

A checkpoint trained with ``--width 20`` holds rows of 20-digit operands. The same weights can read
wider rows when nothing they index grows past what they hold: :func:`widen` gives a copy of the model
for the task at width ``W'`` (same operation, format, BOS and padding) with its context and causal
masks extended to the wider rows, rotary tables recomputed for them, and the position rule attached
for the wider task. Whether a width fits depends on the scheme (:func:`widening_limit`):

============  ===============================================================================
scheme        what bounds the width
============  ===============================================================================
coupling      the largest ID (answer width + 1) must stay below the position table's rows
abacus        the largest ID (answer width) must stay below the table's rows
randomized    the row's tokens are spread over the table: at most one token per row
learned       IDs are token indices: the row must fit the table (no widening past ``n_ctx``)
rotary, nope  no table to outgrow (rotary's rotations are computed at any position; nope's zero
              table is extended with zeros)
============  ===============================================================================

A width past the limit raises :class:`~mechinterp_arith.core.errors.NotApplicable` with one line
naming it (e.g. "coupling IDs reach 64 at 62 digits; the position table has 63 rows").

>>> from mechinterp_arith import ModelConfig, Task, build_model
>>> task = Task("add", 4, format="reversed", width=20)
>>> cfg = ModelConfig.for_task(task, positional="coupling", d_model=16, d_mlp=32)
>>> model, wide = widen(build_model(cfg, task=task), cfg, task, 40)
>>> wide.width, model.cfg.n_ctx, widening_limit("coupling", task, cfg.n_ctx)
(40, 123, 60)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from .errors import NotApplicable
from .model import ModelConfig, build_model, model_device
from .position_schemes import largest_id
from .tasks import MAX_WIDTH, Task


def wider_task(task: Task, width: int) -> Task:
    """``task`` at operand width ``width`` (same operation, trained length, format, BOS, padding, modulus)."""
    return dataclasses.replace(task, width=width)


def rows_needed(scheme: str, task: Task) -> int:
    """Rows the position table must hold for ``task``'s rows under ``scheme`` (0: no table read)."""
    if scheme in ("abacus", "coupling"):
        return largest_id(scheme, task) + 1
    if scheme in ("rotary", "nope"):
        return 0
    return task.n_ctx  # learned, randomized: one row per token


def widening_limit(scheme: str, task: Task, table_rows: int) -> int | None:
    """The widest operand width whose rows the weights can read (None: no limit from the table)."""
    if scheme in ("rotary", "nope"):
        return None
    width = task.width
    while width < MAX_WIDTH and rows_needed(scheme, wider_task(task, width + 1)) <= table_rows:
        width += 1
    return width


def check_widening(scheme: str, task: Task, table_rows: int, width: int) -> Task:
    """``task`` at ``width``, or :class:`NotApplicable` naming the limit when the weights cannot read it."""
    if width < task.width:
        raise ValueError(
            f"width {width} is narrower than the format's {task.width}: a model reads narrower operands as is"
        )
    wide = wider_task(task, width)
    need = rows_needed(scheme, wide)
    if need <= table_rows:
        return wide
    widest = widening_limit(scheme, task, table_rows)
    if scheme == "learned":
        raise NotApplicable(
            f"learned positions index the table by token: {width}-digit rows have {wide.n_ctx} tokens; "
            f"the position table has {table_rows} rows (widest format: {widest} digits)"
        )
    what = "IDs reach" if scheme in ("abacus", "coupling") else "rows of"
    count = need - 1 if scheme in ("abacus", "coupling") else need
    raise NotApplicable(
        f"{scheme} {what} {count} {'tokens ' if scheme == 'randomized' else ''}at {width} digits; "
        f"the position table has {table_rows} rows, IDs 0..{table_rows - 1} (widest format: {widest} digits)"
    )


def check_readable(model_config: ModelConfig, task: Task, m: int) -> None:
    """Before any work: NotApplicable naming the limit when a model of ``model_config`` trained on
    ``task`` cannot read ``m``-digit operands (nothing to check within the format's width)."""
    if m > task.width:
        check_widening(model_config.positional, task, model_config.n_ctx, m)


def widen(
    model: TransformerBridge, model_config: ModelConfig, task: Task, width: int
) -> tuple[TransformerBridge, Task]:
    """``(model, task)`` at operand width ``width``: a copy of ``model`` (eval mode, its weights, on its
    device) whose context is the wider task's ``n_ctx``, with the position rule of the wider task; the
    original is untouched. NotApplicable where the scheme's table cannot hold the wider rows."""
    scheme = model_config.positional
    wide = check_widening(scheme, task, model_config.n_ctx, width)
    copy = build_model(model_config, device=model_device(model), task=wide)
    copy.load_state_dict(model.state_dict())
    extend_context(copy, wide.n_ctx, nope=scheme == "nope")
    return copy.eval(), wide


def extend_context(model: TransformerBridge, n_ctx: int, nope: bool = False) -> None:
    """Let ``model`` read rows of ``n_ctx`` tokens: its configs' ``n_ctx``, every attention's causal
    mask, the rotary cos/sin tables, and (``nope``) the zero position table extended with zeros; a
    learned table is left as it is (the IDs read from it stay below its rows: :func:`check_widening`)."""
    native: Any = model.original_model  # TL's NativeModel: typed as a Module by the bridge
    old = int(native.cfg.n_ctx)
    if n_ctx <= old:
        return
    native.cfg.n_ctx = model.cfg.n_ctx = n_ctx
    for module in native.modules():
        if isinstance(getattr(module, "causal_mask", None), torch.Tensor):
            mask = module.causal_mask
            module.causal_mask = torch.triu(torch.ones(n_ctx, n_ctx, dtype=torch.bool, device=mask.device), 1)
    rotary = getattr(native, "rotary", None)
    if rotary is not None:
        fresh = type(rotary)(native.cfg).to(rotary.cos_cached.device)
        rotary.cos_cached, rotary.sin_cached = fresh.cos_cached, fresh.sin_cached
    if nope:
        table = native.pos.weight
        native.pos.weight = torch.nn.Parameter(table.new_zeros(n_ctx, table.shape[1]), requires_grad=False)
