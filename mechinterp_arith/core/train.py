"""Training in place: the whole path from operand pairs to loss on one screen.

>>> from mechinterp_arith import Task, train, TrainConfig
>>> model, history, snapshots = train(Task("add", digits=2), train_config=TrainConfig(steps=300))
>>> history[["step", "loss", "id_exact"]].tail(1)          # doctest: +SKIP

Loss is cross-entropy on answer tokens only. AdamW with linear warmup and a cosine (or constant)
schedule, gradient clipping. Batches are a pure function of ``(seed, step)`` and the optimizer
state is saved with the weights, so a run resumed after an interruption ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from . import data
from .checkpoint import save_checkpoint, weights_of
from .evaluate import accuracy
from .files import atomic_save_tensors
from .model import ModelConfig, build_model, fused_layernorm, resolve_device
from .position_schemes import position_rule
from .seeding import generator
from .tasks import END, Task
from .train_config import TrainConfig, lr_at, with_scheme_defaults
from .train_state import STATE_JSON, restore_state, save_state, saved_snapshots


class TrainResult(NamedTuple):
    model: torch.nn.Module  # the hooked bridge, in eval mode
    history: pd.DataFrame  # one row per evaluation
    snapshots: dict[int, dict[str, Tensor]]  # step -> weights (CPU)


@dataclass
class TrainingData:
    """Token rows of the training pairs with the mask of positions whose next token is an answer token."""

    inputs: Int[Tensor, "n seq"]
    targets: Int[Tensor, "n seq"]
    loss_mask: Bool[Tensor, "n seq"]
    split: data.Split = field(repr=False)

    @classmethod
    def build(cls, task: Task, split: data.Split) -> "TrainingData":
        tokens, starts = task.encode_batch(*split.train)
        positions = torch.arange(tokens.shape[1] - 1)
        if task.fixed_length:
            ends = torch.full_like(starts, tokens.shape[1])
        else:  # up to and including the end token
            ends = (tokens == END).long().argmax(1) + 1
        mask = (positions >= (starts - 1).unsqueeze(1)) & (positions < (ends - 1).unsqueeze(1))
        return cls(tokens[:, :-1], tokens[:, 1:], mask, split)

    def to(self, device) -> "TrainingData":
        return TrainingData(self.inputs.to(device), self.targets.to(device), self.loss_mask.to(device), self.split)


def batch_indices(n: int, batch_size: int, seed: int, step: int, rng: str = "seedsequence") -> Int[Tensor, "batch"]:
    """The rows of step ``step``: a pure function of (seed, step), so resuming replays them exactly.
    ``rng``: how the stream is derived (see ``TrainConfig.batch_rng``)."""
    if rng == "arithmetic":  # version 0.1.0's derivation, kept to reproduce the shipped checkpoints
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    else:
        g = generator(seed, "batches", step)
    return torch.randint(0, n, (batch_size,), generator=g)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (fused kernel: one op for all tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)


def answer_loss(logits, targets, mask) -> Tensor:
    """Mean cross-entropy over answer positions only."""
    return F.cross_entropy(logits[mask], targets[mask])


@dataclass
class _Run:
    """What one training run holds while it trains (see :func:`train`)."""

    task: Task
    cfg: TrainConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: TrainingData
    eval_sets: dict[str, tuple[Tensor, Tensor]]
    out: Path | None
    run_id: dict
    step: int = 0
    history: list[dict] = field(default_factory=list)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    seconds: float = 0.0  # training time before this process (from the resumed history)

    def reached_target(self) -> bool:
        t = self.cfg.target_accuracy
        return t is not None and bool(self.history) and self.history[-1]["id_exact"] >= t


def train(
    task: Task,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    command: str | None = None,
    callback: Callable[[int, torch.nn.Module, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a hooked model on ``task`` in place and return ``(model, history, snapshots)``.

    With ``out_dir`` the run keeps a resumable state there while it trains and ends by writing a
    checkpoint directory (config.json, model.safetensors, metrics.json, snapshots/). With
    ``resume=True`` an interrupted run in ``out_dir`` continues from its last saved state.
    ``callback(step, model, row)`` is called after every evaluation.
    """
    run = _start(task, model_config or ModelConfig.for_task(task), train_config or TrainConfig(), out_dir, resume)
    bar = tqdm(total=run.cfg.steps, initial=run.step, disable=not progress, desc=f"train {task.name}", unit="step")
    t0, losses = time.perf_counter(), []
    run.model.train()
    while run.step < run.cfg.steps and not run.reached_target():
        losses.append(_step(run))
        bar.update(1)
        _maybe_snapshot(run)
        if run.step % run.cfg.eval_every == 0 or run.step == run.cfg.steps:
            row = _evaluate(run, torch.stack(losses).mean().item(), t0)
            bar.set_postfix(loss=f"{row['loss']:.4f}", id=f"{row['id_exact']:.3f}", ood=f"{row.get('ood_exact', float('nan')):.3f}")
            if callback is not None:
                callback(run.step, run.model, row)
            t0, losses = time.perf_counter(), []
    bar.close()
    run.model.eval()
    if run.out is not None:
        mcfg = ModelConfig.from_dict(run.run_id["model"])
        save_checkpoint(run.out, run.model, task, mcfg, run.cfg.to_dict(), run.history, command=command)
    return TrainResult(run.model, pd.DataFrame(run.history), run.snapshots)


def _start(task: Task, mcfg: ModelConfig, cfg: TrainConfig, out_dir, resume: bool) -> _Run:
    """Data, model, optimizer and (when resuming) the saved state of a run."""
    if mcfg.d_vocab != task.d_vocab or mcfg.n_ctx < task.n_ctx:
        raise ValueError(f"model (vocab {mcfg.d_vocab}, n_ctx {mcfg.n_ctx}) does not fit {task.name} "
                         f"(vocab {task.d_vocab}, n_ctx {task.n_ctx})")
    device = resolve_device(cfg.device)
    cfg = with_scheme_defaults(cfg, mcfg.positional)
    split = data.id_split(task, cfg.n_train, cfg.n_test, seed=cfg.data_seed, lengths=cfg.operand_lengths)
    training = TrainingData.build(task, split).to(device)
    sets = {"id": (split.test_a[: cfg.eval_n], split.test_b[: cfg.eval_n])}
    ood_m = cfg.ood_digits or data.default_ood_digits(task)
    if ood_m:
        sets["ood"] = data.ood_both(task, ood_m, cfg.eval_n, seed=cfg.data_seed)
    model = build_model(mcfg, device=device, task=task)
    run = _Run(task, cfg, model, make_optimizer(model, cfg), training, sets, None,
               {"task": task.to_dict(), "model": mcfg.to_dict(), "training": cfg.to_dict()})
    if out_dir is not None:
        run.out = Path(out_dir)
        run.out.mkdir(parents=True, exist_ok=True)
        if resume and (run.out / STATE_JSON).is_file():
            run.step, run.history = restore_state(run.out, run.run_id, model, run.optimizer)
            run.seconds = run.history[-1]["elapsed_s"] if run.history else 0.0
        run.snapshots = saved_snapshots(run.out) if resume else {}
    return run


def _step(run: _Run) -> Tensor:
    """One optimizer step; returns the batch loss (a 0-d tensor, not synced to the host)."""
    cfg, d = run.cfg, run.data
    rows = batch_indices(len(d.inputs), cfg.batch_size, cfg.seed, run.step, cfg.batch_rng).to(d.inputs.device)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, cfg)
    inputs = d.inputs[rows]
    with fused_layernorm(run.model):  # hooks are not used while training; see its docstring
        logits = run.model(inputs, **_random_positions(run, inputs))
    loss = answer_loss(logits, d.targets[rows], d.loss_mask[rows])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.step += 1
    return loss.detach()


def _random_positions(run: _Run, inputs: Tensor) -> dict:
    """``position_ids=`` (and ``attention_mask=``) of this step's rows when the run draws random
    positions, else nothing."""
    rule = position_rule(run.model)
    if rule is None or not run.cfg.random_positions:
        return {}
    return rule.training_inputs(inputs, generator(run.cfg.seed, "positions", run.step))


def _maybe_snapshot(run: _Run) -> None:
    every = run.cfg.snapshot_every
    if every and run.step % every == 0:
        run.snapshots[run.step] = weights_of(run.model)
        if run.out is not None:
            (run.out / "snapshots").mkdir(exist_ok=True)
            atomic_save_tensors(run.snapshots[run.step], run.out / "snapshots" / f"step_{run.step:07d}.safetensors")


def _evaluate(run: _Run, loss: float, t0: float) -> dict:
    """Score the evaluation sets, append the history row (``elapsed_s``: wall seconds since the run
    started, evaluations included) and save the resumable state."""
    row = {"step": run.step, "loss": loss, "lr": lr_at(max(0, run.step - 1), run.cfg)}
    row["id_exact"] = accuracy(run.model, run.task, *run.eval_sets["id"])["exact"]
    if "ood" in run.eval_sets:
        row["ood_exact"] = accuracy(run.model, run.task, *run.eval_sets["ood"])["exact"]
    run.seconds += time.perf_counter() - t0
    row["elapsed_s"] = round(run.seconds, 3)
    run.model.train()
    run.history.append(row)
    if run.out is not None:
        save_state(run.out, run.run_id, run.model, run.optimizer, run.step, run.history)
    return row
