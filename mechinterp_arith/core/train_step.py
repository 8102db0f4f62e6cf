"""One optimizer step of K training runs at once (K = 1 for a single run).

Each run keeps its own bridge, AdamW optimizer, batch order and gradient clipping, so a run
trained beside others ends with the weights it would have alone (to float rounding; tested).
Their forward passes are one computation when :class:`~mechinterp_arith.core.stacked_forward.StackedForward`
can run the architecture (``TrainConfig.forward`` "auto" or "plain"), else each bridge runs its
own hooked forward ("bridge": version 0.1.0's step, which the shipped checkpoints were trained with).
The loss of the K runs is the sum of their mean answer losses, so each run's gradient is its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from . import data
from .model import fused_layernorm
from .position_schemes import numbering_of, position_rule
from .seeding import arithmetic_generator, generator
from .stacked_forward import StackedForward, stacked_forward_for, stacked_unsupported_reasons
from .tasks import END, Task
from .train_config import TrainConfig, lr_at

PROBE_ROWS = 8  # training rows that check the stacked forward against each bridge


@runtime_checkable  # the runtime shape checks (pytest --jaxtyping-packages) test isinstance
class Stepped(Protocol):
    """What a step needs of a run (``train_loop.TrainingRun`` has it)."""

    cfg: TrainConfig
    model: TransformerBridge
    optimizer: torch.optim.Optimizer
    step: int

    @property
    def anneal_from(self) -> int | None: ...  # see train_config.anneal_start


def batch_indices(n: int, batch_size: int, seed: int, step: int, rng: str = "seedsequence") -> Int[Tensor, " batch"]:
    """The rows of step ``step``: a pure function of (seed, step), so resuming replays them exactly.
    ``rng``: how the stream is derived (see ``TrainConfig.batch_rng``)."""
    if rng == "arithmetic":  # version 0.1.0's derivation, kept to reproduce the shipped checkpoints
        g = arithmetic_generator(seed, step)
    else:
        g = generator(seed, "batches", step)
    return torch.randint(0, n, (batch_size,), generator=g)


def answer_loss(
    logits: Float[Tensor, "n seq vocab"], targets: Int[Tensor, "n seq"], mask: Bool[Tensor, "n seq"]
) -> Tensor:
    """Mean cross-entropy over answer positions only."""
    return F.cross_entropy(logits[mask], targets[mask])


@dataclass
class TrainingData:
    """Token rows of the training pairs with the mask of positions whose next token is an answer token."""

    inputs: Int[Tensor, "n seq"]
    targets: Int[Tensor, "n seq"]
    loss_mask: Bool[Tensor, "n seq"]
    split: data.Split = field(repr=False)

    @classmethod
    def build(cls, task: Task, split: data.Split, end_token: bool = True) -> TrainingData:
        """``end_token=False``: a fixed-length format's end token is not a target (decoding reads the
        format's answer digits and never generates it); an unpadded answer's always is (it ends the answer)."""
        tokens, starts = task.encode_batch(*split.train)
        positions = torch.arange(tokens.shape[1] - 1)
        if task.fixed_length:
            ends = torch.full_like(starts, tokens.shape[1] - int(task.has_end_token and not end_token))
        else:  # up to and including the end token
            ends = (tokens == END).long().argmax(1) + 1
        mask = (positions >= (starts - 1).unsqueeze(1)) & (positions < (ends - 1).unsqueeze(1))
        return cls(tokens[:, :-1], tokens[:, 1:], mask, split)

    def to(self, device: torch.device | str) -> TrainingData:
        return TrainingData(self.inputs.to(device), self.targets.to(device), self.loss_mask.to(device), self.split)

    @functools.cached_property
    def first_loss_position(self) -> int:
        """The first input position any row's loss reads (logits before it are never needed)."""
        return int(self.loss_mask.any(0).nonzero().min())


def choose_forward(models: Sequence[TransformerBridge], training: TrainingData, choice: str) -> StackedForward | None:
    """The stacked forward for ``choice`` "auto"/"plain" when it runs these models exactly, else None
    (each bridge's own forward). ValueError when "plain" cannot be used."""
    if choice == "bridge":
        return None
    fwd = stacked_forward_for(models, training.inputs[:PROBE_ROWS])
    if fwd is None and choice == "plain":
        reasons = stacked_unsupported_reasons(models[0]) or ["its logits differ from the bridge's"]
        raise ValueError(f"forward='plain' cannot train this model ({', '.join(reasons)}); use 'auto' or 'bridge'")
    return fwd


def train_step(runs: Sequence[Stepped], training: TrainingData, forward: StackedForward | None) -> Tensor:
    """One optimizer step of every run (all at the same step); returns their batch losses [K]
    (not synced to the host). ``forward``: the stacked forward of exactly these runs' models, or None."""
    cfg, step = runs[0].cfg, runs[0].step
    device = training.inputs.device
    rows = torch.stack(
        [batch_indices(len(training.inputs), cfg.batch_size, r.cfg.seed, step, cfg.batch_rng) for r in runs]
    ).to(device)  # [K, batch]
    for run in runs:
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at(step, run.cfg, run.anneal_from)
    losses = (
        _stacked_losses(forward, runs, training, rows) if forward is not None else _bridge_losses(runs, training, rows)
    )
    for run in runs:
        run.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    for run in runs:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
        run.optimizer.step()
        run.step += 1
    return losses.detach()


def _bridge_losses(runs: Sequence[Stepped], training: TrainingData, rows: Int[Tensor, "K batch"]) -> Tensor:
    losses = []
    for run, r in zip(runs, rows):
        drawn = random_positions(run, training.inputs[r])
        inputs = drawn.pop("input_ids", training.inputs[r])  # distractor digits in the hidden padding, if drawn
        with fused_layernorm(run.model):  # hooks are not used while training; see its docstring
            logits = run.model(inputs, **drawn)
        losses.append(answer_loss(logits, training.targets[r], training.loss_mask[r]))
    return torch.stack(losses)


def random_positions(run: Stepped, inputs: Int[Tensor, "batch pos"]) -> dict[str, Tensor]:
    """``position_ids=`` (and ``attention_mask=``) of this step's rows when the run draws random
    positions (``TrainConfig.random_positions`` under a scheme with a position rule), else nothing;
    with ``TrainConfig.distractors`` also ``input_ids=``, the rows with distractor digits."""
    rule = position_rule(run.model)
    if rule is None or not run.cfg.random_positions:
        return {}
    g = generator(run.cfg.seed, "positions", run.step)
    return rule.training_inputs(inputs, g, distractors=bool(run.cfg.distractors))


def step_numbering(
    runs: Sequence[Stepped], inputs: Int[Tensor, "K batch pos"]
) -> tuple[Int[Tensor, "K batch pos"], Int[Tensor, "K batch pos"] | None, Bool[Tensor, "K batch pos"] | None]:
    """``(inputs, position_ids, visible)`` of each run's rows this step, as its bridge gets them: the
    random ones of :func:`random_positions` (and its distractor digits), else the model's own
    (:func:`numbering_of`); IDs and visibility None when no run's model has a position rule (0, 1,
    2, ..., all visible)."""
    if all(position_rule(run.model) is None for run in runs):
        return inputs, None, None
    rows, ids, visible = [], [], []
    for run, x in zip(runs, inputs):
        drawn = random_positions(run, x)
        i, v = (drawn["position_ids"], drawn.get("attention_mask")) if drawn else numbering_of(run.model, x)
        rows.append(drawn.get("input_ids", x))
        ids.append(i)
        visible.append(v)  # None: randomized positions, drawn without a mask
    if all(v is None for v in visible):
        return torch.stack(rows), torch.stack(ids), None
    return (
        torch.stack(rows),
        torch.stack(ids),
        torch.stack([torch.ones_like(x, dtype=torch.bool) if v is None else v.bool() for v, x in zip(visible, inputs)]),
    )


def _stacked_losses(
    forward: StackedForward, runs: Sequence[Stepped], training: TrainingData, rows: Int[Tensor, "K batch"]
) -> Tensor:
    """Each run's mean cross-entropy over its answer positions, without boolean indexing (no host sync)."""
    first = training.first_loss_position
    inputs, ids, visible = step_numbering(runs, training.inputs[rows])
    logits = forward(inputs, first, ids, visible)  # [K, batch, pos - first, vocab]
    targets, mask = training.targets[rows][:, :, first:], training.loss_mask[rows][:, :, first:].to(logits.dtype)
    ce = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none").view_as(mask)
    return (ce * mask).sum((1, 2)) / mask.sum((1, 2))
