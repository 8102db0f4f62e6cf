"""Position schemes: which position ID each token gets, and how the model is fed them.

Every scheme is a TransformerLens 4 bridge built by :func:`~mechinterp_arith.core.model.build_model`;
all but ``rotary`` add a learned position table (``pos_embed``, ``W_pos``) to the token embedding.
What differs is the ID each token looks up:

============  ======================================================================  ===============================
scheme        position IDs (evaluation)                                               while training (default)
============  ======================================================================  ===============================
learned       0, 1, 2, ... (the token's index)                                        the same
rotary        0, 1, 2, ... rotating queries and keys (no table)                       the same
nope          0, 1, 2, ... into a table of zeros that never trains: no positions      the same
randomized    evenly spaced over a table 4x the example, in order (Ruoss et al. 2023)  a sorted random subset per row
abacus        a digit's place + 1 within its own number; 0 for other tokens; an       a random offset per row
              operand's zero padding hidden from attention (McLeish et al. 2024)
coupling      digits of equal significance in a, b and the answer share an ID:        a random offset per row, and a
              place + 2 (the answer's digits, the operands' inside their span: the    random span (the operands read
              longer operand's length); ``+`` and ``=`` 1; 0 elsewhere; zero padding  as zero-padded to 1..W places)
              outside the span hidden from attention (Cho et al. 2024)
============  ======================================================================  ===============================

The token-dependent IDs (abacus, coupling) read the task's token layout,
:func:`~mechinterp_arith.core.positions.digit_layout`, so they hold in every format. A
:class:`PositionRule` attached to the model computes them from the input tokens on every forward
(a forward pre-hook of the wrapped model, which also passes the attention mask that hides padding),
so ``model(tokens)``, ``run_with_cache``, ``run_with_hooks`` and every analysis see them without
being told. They enter the model at the hook point ``pos_embed.hook_in`` (:data:`POSITION_IDS_HOOK`):
read it from a cache, or patch it to move a token elsewhere. Training passes random IDs explicitly
(:meth:`PositionRule.training_inputs`).

Deviations from the references, and why (docs/length_generalisation.md measures them): the
fixed-width formats zero-pad every operand, which the references' numbers do not have, so that
padding is hidden from attention (its count would otherwise change with the operand length, a
shift the models do not survive); offsets are drawn per row (McLeish et al. draw one per batch);
coupling also draws a random span per row, so that training sees digit distances up to the width
(without it, attention between IDs farther apart than the trained operands is never trained);
randomized evaluation uses evenly spaced IDs rather than a fresh random draw, so that every
analysis of a checkpoint is deterministic.

>>> from mechinterp_arith import Task
>>> task = Task("add", 2, width=3)                         # paper format: a, b zero-padded to 3 digits
>>> tokens = task.encode_batch([7], [45])[0][:, :-1]        # 007 045 then the answer 250 reversed
>>> PositionRule("coupling", task, 12).ids(tokens).tolist()
[[0, 3, 2, 0, 3, 2, 2, 3, 4]]
>>> PositionRule("abacus", task, 12).ids(tokens).tolist()
[[0, 0, 1, 0, 2, 1, 1, 2, 3]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from .choices import SCHEMES as SCHEMES  # re-exported: documented here
from .positions import ANSWER_NUMBER, DigitLayout, digit_layout
from .scheme_defaults import scheme_defaults as scheme_defaults  # re-exported: each scheme's defaults
from .tasks import EQUALS, SYMBOLS, Task

SCHEMES_WITH_RULE = ("randomized", "abacus", "coupling")  # schemes whose IDs are not the token index
HIDES_PADDING = ("abacus", "coupling")  # schemes that hide the operands' zero padding from attention
POSITION_IDS_HOOK = "pos_embed.hook_in"  # the IDs every ruled scheme feeds its table
RANDOMIZED_TABLE_FACTOR = 4  # randomized: the table is this many times the example's length


def default_n_ctx(scheme: str, task: Task) -> int:
    """The table size (and context) a scheme uses by default for ``task``: the example's length,
    ``RANDOMIZED_TABLE_FACTOR`` times it for ``randomized``, and for abacus and coupling at least
    twice the largest ID, so that training offsets move every ID across as many rows again."""
    if scheme == "randomized":
        return RANDOMIZED_TABLE_FACTOR * task.n_ctx
    if scheme in ("abacus", "coupling"):
        return max(task.n_ctx, 2 * (largest_id(scheme, task) + 1))
    return task.n_ctx


def largest_id(scheme: str, task: Task) -> int:
    """The largest position ID the scheme gives a ``task`` example at offset 0."""
    if scheme == "coupling":
        return task.answer_width + 1
    if scheme == "abacus":
        return task.answer_width
    return task.n_ctx - 1


@dataclass(frozen=True)
class PositionRule:
    """The position IDs of a ruled scheme (``randomized``, ``abacus``, ``coupling``) for one task's
    layout and a table of ``n_positions`` rows. Attached to a model by :func:`attach`."""

    scheme: str
    task: Task
    n_positions: int

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES_WITH_RULE:
            raise ValueError(
                f"scheme {self.scheme!r} has no position rule; schemes with a rule: {', '.join(SCHEMES_WITH_RULE)}"
            )
        need = self.task.n_ctx if self.scheme == "randomized" else largest_id(self.scheme, self.task) + 1
        if self.n_positions < need:
            raise ValueError(
                f"a table of {self.n_positions} positions is shorter than the {need} "
                f"{'tokens' if self.scheme == 'randomized' else 'IDs'} of {self.task.name} (width {self.task.width})"
            )
        if self.scheme != "randomized":
            digit_layout(self.task, torch.zeros(1, 0, dtype=torch.long))  # ValueError for a layout without places

    @property
    def max_offset(self) -> int:
        """The largest training offset that keeps every ID inside the table (abacus, coupling)."""
        return self.n_positions - 1 - largest_id(self.scheme, self.task)

    def ids(
        self, tokens: Int[Tensor, "batch pos"], offsets: Int[Tensor, " batch"] | None = None
    ) -> Int[Tensor, "batch pos"]:
        """Evaluation IDs of token rows (any prefix of full examples), shifted by ``offsets`` per row."""
        return self.numbering(tokens, offsets)[0]

    def visible(self, tokens: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos"] | None:
        """Which tokens attention may read (abacus, coupling: all but zero padding), or None: all."""
        return None if self.scheme == "randomized" else self.numbering(tokens)[1]

    def numbering(
        self,
        tokens: Int[Tensor, "batch pos"],
        offsets: Int[Tensor, " batch"] | None = None,
        spans: Int[Tensor, " batch"] | None = None,
    ) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """``(ids, visible)``: the IDs, and False for the zero padding that abacus and coupling hide.
        ``spans`` (coupling) widens a row's span to that many places (never below its longer operand)."""
        if self.scheme == "randomized":
            n = max(tokens.shape[1], self.task.n_ctx)
            spaced = torch.linspace(0, self.n_positions - 1, n, device=tokens.device).round().long()
            return spaced[: tokens.shape[1]].expand(len(tokens), -1), torch.ones_like(tokens, dtype=torch.bool)
        start = 1 if offsets is None else 1 + offsets.to(tokens.device).unsqueeze(1)
        layout = digit_layout(self.task, tokens)
        if self.scheme == "abacus":
            return abacus_ids(layout, start)
        separator = (tokens == EQUALS) | (tokens == SYMBOLS.index(self.task.symbol))
        if self.task.format == "paper":
            separator = torch.zeros_like(separator)
        if spans is not None:
            layout = layout._replace(length=torch.maximum(layout.length, spans.to(tokens.device).unsqueeze(1)))
        return coupled_ids(layout, separator, start)

    def training_inputs(
        self, tokens: Int[Tensor, "batch pos"], g: torch.Generator, distractors: bool = False
    ) -> dict[str, Tensor]:
        """Random ``position_ids`` (and ``attention_mask``) for training rows: a sorted random subset
        of the table (randomized); the evaluation IDs shifted by an offset in ``[0, max_offset]`` per
        row (abacus, coupling), and for coupling a span drawn per row between the longer operand's
        length and the width (the operands read as zero-padded to it).

        ``distractors`` (abacus, coupling): a share of the zero padding these schemes hide (drawn per
        row, uniform in [0, 1]: rows with none keep the evaluation's regime of few visible tokens)
        becomes random digits, visible, each at an ID drawn from the table's rows outside the row's own
        ``[start, start + largest_id]`` (``input_ids`` in the result holds the rows with them). The
        answer does not change; attention learns to pass over digits at IDs it does not read, which
        the trained operands' few digits never show it and longer operands bring."""
        B, S = tokens.shape
        if self.scheme == "randomized":
            picks = torch.rand(B, self.n_positions, generator=g).argsort(1)[:, :S]
            return {"position_ids": picks.sort(1).values.to(tokens.device)}
        offsets = torch.randint(0, self.max_offset + 1, (B,), generator=g)
        spans = torch.randint(1, self.task.width + 1, (B,), generator=g) if self.scheme == "coupling" else None
        ids, visible = self.numbering(tokens, offsets, spans)
        if not distractors:
            return {"position_ids": ids, "attention_mask": visible.long()}
        top = largest_id(self.scheme, self.task)
        outside = self.n_positions - 2 - top  # rows 1..start-1 and past start + top
        if outside < 1:
            raise ValueError(f"a table of {self.n_positions} positions leaves no ID outside an example for distractors")
        share = torch.rand(B, 1, generator=g)  # each row's share of hidden slots that become distractors
        chosen = torch.rand(B, S, generator=g) < share
        start = (1 + offsets).unsqueeze(1)  # [B, 1]: the row's separator/first ID (ids' start)
        pick = torch.randint(0, outside, (B, S), generator=g)
        far = torch.where(pick < start - 1, 1 + pick, pick + top + 2)
        digits = torch.randint(0, 10, (B, S), generator=g)
        hidden = ~visible & chosen.to(tokens.device)
        return {
            "input_ids": torch.where(hidden, digits.to(tokens.device), tokens),
            "position_ids": torch.where(hidden, far.to(tokens.device), ids),
            "attention_mask": (visible | hidden).long(),
        }

    def training_ids(self, tokens: Int[Tensor, "batch pos"], g: torch.Generator) -> Int[Tensor, "batch pos"]:
        """The ``position_ids`` of :meth:`training_inputs`."""
        return self.training_inputs(tokens, g)["position_ids"]

    def __call__(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Forward pre-hook of the wrapped model: fill ``position_ids`` from the input tokens."""
        tokens = args[0] if args else kwargs.get("input_ids")
        if tokens is None or tokens.is_floating_point():
            return args, kwargs
        ids, visible = self.numbering(tokens)
        if kwargs.get("position_ids") is None:
            kwargs["position_ids"] = ids
        if kwargs.get("attention_mask") is None and self.scheme != "randomized":
            kwargs["attention_mask"] = visible.long()
        return args, kwargs


def abacus_ids(
    layout: DigitLayout, start: int | Int[Tensor, "batch 1"]
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """``(ids, visible)``: ``start + place`` for the digits of a number (all of the answer's, the
    operands' without zero padding), 0 for every other token; the operands' zero padding hidden."""
    number, place = layout.number, layout.place
    own_length = layout.length.gather(1, number.clamp(0, 1))
    keep = (number == ANSWER_NUMBER) | ((number >= 0) & (place < own_length))
    return torch.where(keep, start + place, 0), keep | (number < 0)


def coupled_ids(
    layout: DigitLayout, separator: Bool[Tensor, "batch pos"], start: int | Int[Tensor, "batch 1"]
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """``(ids, visible)``: ``start + 1 + place`` for the answer's digits and the operands' digits inside
    their span (places below the longer operand's length: the shorter one is zero-padded to it),
    ``start`` for operator and ``=``, 0 for every other token; operand digits outside the span
    (zero padding) hidden."""
    number, place = layout.number, layout.place
    span = layout.length.amax(1, keepdim=True)
    inside = (number == ANSWER_NUMBER) | ((number >= 0) & (place < span))
    ids = torch.where(inside, start + 1 + place, 0)
    return torch.where(separator, start + torch.zeros_like(ids), ids), inside | (number < 0)


def attach(model: TransformerBridge, rule: PositionRule) -> TransformerBridge:
    """Make ``model`` number its tokens with ``rule`` on every forward that passes no ``position_ids``."""
    native = model.original_model
    if position_rule(model) is not None:
        raise ValueError("this model already has a position rule")
    native.position_rule = rule  # type: ignore[assignment]  # nn.Module.__setattr__ is typed for tensors and modules only
    native.register_forward_pre_hook(rule, with_kwargs=True)
    return model


def numbering_of(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"]
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """``(ids, visible)`` the model uses on ``tokens`` without hooks: its rule's, else 0, 1, 2, ...
    with every token visible (learned, nope, and rotary, whose rotations follow those IDs)."""
    rule = position_rule(model)
    if rule is not None:
        return rule.numbering(tokens)
    return torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens), torch.ones_like(
        tokens, dtype=torch.bool
    )


def position_rule(model: torch.nn.Module) -> PositionRule | None:
    """The rule attached to ``model`` by :func:`attach`, or None (its IDs are 0, 1, 2, ...)."""
    return getattr(getattr(model, "original_model", None), "__dict__", {}).get("position_rule")
