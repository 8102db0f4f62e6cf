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
from .checkpoint import WEIGHTS, load_weights, read_history, save_checkpoint, snapshot_path, weights_of
from .evaluate import accuracy
from .files import atomic_save_tensors
from .model import ModelConfig, build_model, fused_layernorm, resolve_device
from .seeding import generator
from .tasks import END, Task
from .train_config import TrainConfig, lr_at
from .train_state import (STATE_EVERY_S, holding_out_dir, pending_losses, prepare_run_dir, restore_state,
                          resumed_snapshots, save_state)


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
    pending: list[Tensor] = field(default_factory=list)  # resumed losses since the last evaluation
    last_save: float = field(default_factory=time.monotonic)  # when the state was last saved

    def reached_target(self) -> bool:
        t = self.cfg.target_accuracy
        return t is not None and bool(self.history) and self.history[-1]["id_exact"] >= t


@holding_out_dir  # one writer per out_dir: the lock is held while train runs
def train(
    task: Task,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    command: str | None = None,
    callback: Callable[[int, torch.nn.Module, dict], None] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train a hooked model on ``task`` in place and return ``(model, history, snapshots)``.

    With ``out_dir`` the run keeps a resumable state there while it trains and ends by writing a
    checkpoint directory (config.json, model.safetensors, metrics.json, snapshots/). With
    ``resume=True`` an interrupted run in ``out_dir`` continues from its last saved state (saved at
    every evaluation and every minute); ``resume=False`` starts over. A finished checkpoint in
    ``out_dir`` is returned as it is when it is this run's (with ``resume``), replaced only with
    ``overwrite=True`` otherwise; another writer of ``out_dir`` is refused.
    ``callback(step, model, row)`` is called after every evaluation.
    """
    run = _start(task, model_config or ModelConfig.for_task(task), train_config or TrainConfig(), out_dir, resume,
                 overwrite)
    bar = tqdm(total=run.cfg.steps, initial=run.step, disable=not progress, desc=f"train {task.name}", unit="step")
    t0, losses = time.perf_counter(), run.pending
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
        _maybe_save_state(run, losses, t0)
    bar.close()
    run.model.eval()
    if run.out is not None:
        mcfg = ModelConfig.from_dict(run.run_id["model"])
        save_checkpoint(run.out, run.model, task, mcfg, run.cfg.to_dict(), run.history, command=command,
                        snapshots={step: snapshot_path(run.out, step) for step in run.snapshots})
    return TrainResult(run.model, pd.DataFrame(run.history), run.snapshots)


def _start(task: Task, mcfg: ModelConfig, cfg: TrainConfig, out_dir, resume: bool, overwrite: bool) -> _Run:
    """Data, model, optimizer and (when resuming) the saved state of a run."""
    if mcfg.d_vocab != task.d_vocab or mcfg.n_ctx < task.n_ctx:
        raise ValueError(f"model (vocab {mcfg.d_vocab}, n_ctx {mcfg.n_ctx}) does not fit {task.name} "
                         f"(vocab {task.d_vocab}, n_ctx {task.n_ctx})")
    device = resolve_device(cfg.device)
    split = data.id_split(task, cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    training = TrainingData.build(task, split).to(device)
    sets = {"id": (split.test_a[: cfg.eval_n], split.test_b[: cfg.eval_n])}
    ood_m = cfg.ood_digits or data.default_ood_digits(task)
    if ood_m:
        sets["ood"] = data.ood_both(task, ood_m, cfg.eval_n, seed=cfg.data_seed)
    model = build_model(mcfg, device=device)
    run = _Run(task, cfg, model, make_optimizer(model, cfg), training, sets, None,
               {"task": task.to_dict(), "model": mcfg.to_dict(), "training": cfg.to_dict()})
    if out_dir is not None:  # everything above is checked before the directory is touched
        run.out = Path(out_dir)
        found = prepare_run_dir(run.out, run.run_id, resume, overwrite)
        if found == "resume":
            meta = restore_state(run.out, run.run_id, model, run.optimizer)
            run.step, run.history, run.seconds = meta["step"], meta["history"], meta["seconds"]
            run.pending = pending_losses(meta, device)
        elif found == "finished":  # nothing left to train: the loop below does not run
            load_weights(model, run.out / WEIGHTS)
            run.history, run.step = read_history(run.out), cfg.steps
        run.snapshots = resumed_snapshots(run.out, model, run.step) if found != "new" else {}
    return run


def _step(run: _Run) -> Tensor:
    """One optimizer step; returns the batch loss (a 0-d tensor, not synced to the host)."""
    cfg, d = run.cfg, run.data
    rows = batch_indices(len(d.inputs), cfg.batch_size, cfg.seed, run.step, cfg.batch_rng).to(d.inputs.device)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, cfg)
    with fused_layernorm(run.model):  # hooks are not used while training; see its docstring
        logits = run.model(d.inputs[rows])
    loss = answer_loss(logits, d.targets[rows], d.loss_mask[rows])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.step += 1
    return loss.detach()


def _maybe_snapshot(run: _Run) -> None:
    every = run.cfg.snapshot_every
    if every and run.step % every == 0:
        run.snapshots[run.step] = weights_of(run.model)
        if run.out is not None:
            snapshot_path(run.out, run.step).parent.mkdir(exist_ok=True)
            atomic_save_tensors(run.snapshots[run.step], snapshot_path(run.out, run.step))


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
        save_state(run.out, run.run_id, run.model, run.optimizer, run.step, run.history, seconds=run.seconds)
        run.last_save = time.monotonic()
    return row


def _maybe_save_state(run: _Run, losses: list[Tensor], t0: float) -> None:
    """Save the resumable state between evaluations once STATE_EVERY_S seconds have passed."""
    if run.out is not None and time.monotonic() - run.last_save >= STATE_EVERY_S:
        seconds = run.seconds + time.perf_counter() - t0
        save_state(run.out, run.run_id, run.model, run.optimizer, run.step, run.history,
                   [x.item() for x in losses], seconds)
        run.last_save = time.monotonic()
