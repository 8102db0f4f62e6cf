"""The training loop of one run, or of K runs of one architecture trained together (seed ensembles).

Each run (a :class:`TrainingRun`) has its own bridge, optimizer, batch order, history, snapshots and
output directory; the runs step together through :func:`~mechinterp_arith.core.train_step.train_step`.

Evaluation stays cheap while training: every ``eval_every`` steps, ``eval_n`` held-out ID pairs
(and as many OOD pairs) are decoded with the key/value-cached decoder. The whole held-out test
split (10,000 pairs for add3) is checked when a run's sample reaches ``target_accuracy`` (the
run stops only when the whole split does too; the check gives up at the first chunk that
rules it out) and scored at the run's last step: the history column ``held_out_exact``.

Nothing non-finite is ever saved: before a state, a snapshot or an evaluation, a run whose loss or
weights became NaN or infinite (e.g. a learning rate of 1e30) stops with :class:`Diverged`, and
its directory keeps the last good state.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from . import data
from .checkpoint import WEIGHTS, CheckpointError, load_weights, read_history, save_checkpoint, snapshot_path, weights_of
from .data import Pairs
from .decoding import generate
from .evaluate import accuracy
from .files import atomic_save_tensors
from .locks import output_path
from .model import ModelConfig, build_model, resolve_device
from .stacked_forward import StackedForward
from .tasks import Task
from .train_config import TrainConfig, anneal_start, lr_at, with_scheme_defaults
from .train_state import STATE_EVERY_S, pending_losses, prepare_run_dir, restore_state, resumed_snapshots, save_state
from .train_step import TrainingData, choose_forward, train_step

HELD_OUT_CHUNK = 2000  # held-out pairs decoded at a time when checking the target on all of them
Callback = Callable[[int, TransformerBridge, dict[str, Any]], None]


class Diverged(ValueError):
    """A run's loss or weights became NaN or infinite; nothing of it was saved after the last good state."""


class TrainResult(NamedTuple):
    model: TransformerBridge  # the hooked bridge, in eval mode
    history: pd.DataFrame  # one row per evaluation
    snapshots: dict[int, dict[str, Tensor]]  # step -> weights (CPU)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (fused kernel: one op for all tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)


@dataclass
class EvalSets:
    """Operand pairs scored while training: an ID sample, an OOD sample (or None), all held-out pairs."""

    id_sample: Pairs
    ood: Pairs | None
    held_out: Pairs

    @classmethod
    def build(cls, task: Task, cfg: TrainConfig, split: data.Split) -> EvalSets:
        ood_m = cfg.ood_digits or data.default_ood_digits(task)
        ood = data.ood_both(task, ood_m, cfg.eval_n, seed=cfg.data_seed) if ood_m else None
        return cls((split.test_a[: cfg.eval_n], split.test_b[: cfg.eval_n]), ood, split.test)


def prepare_data(task: Task, cfg: TrainConfig) -> tuple[TrainingData, EvalSets]:
    """The training rows (on ``cfg.device``) and evaluation sets of the split ``cfg.data_seed`` names
    (``cfg``: a run's, its scheme's defaults resolved: ``operand_lengths`` says which pairs)."""
    if cfg.operand_lengths is None:
        raise ValueError("prepare_data needs the scheme's defaults resolved (train_config.with_scheme_defaults)")
    split = data.id_split(task, cfg.n_train, cfg.n_test, seed=cfg.data_seed, lengths=cfg.operand_lengths)
    training = TrainingData.build(task, split, end_token=cfg.end_token_loss is not False)
    return training.to(resolve_device(cfg.device)), EvalSets.build(task, cfg, split)


@dataclass
class TrainingRun:
    """What one training run holds while it trains."""

    task: Task
    cfg: TrainConfig
    model: TransformerBridge
    optimizer: torch.optim.Optimizer
    out: Path | None
    run_id: dict[str, Any]
    command: str | None = None
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    seconds: float = 0.0  # wall seconds trained so far (from the resumed state, then this process)
    saved: bool = False  # the final checkpoint is written (or was, before this process)
    pending: list[Tensor] = field(default_factory=list)  # resumed losses since the last evaluation
    state_step: int | None = None  # the step of the resumable state last saved in ``out``

    @property
    def anneal_from(self) -> int | None:
        """The step from which the learning rate anneals (``TrainConfig.anneal_at``), or None."""
        return anneal_start(self.cfg, self.history)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.run_id["model"])

    def reached_target(self) -> bool:
        t = self.cfg.target_accuracy
        return t is not None and bool(self.history) and self.history[-1].get("held_out_exact", -1.0) >= t

    @property
    def finished(self) -> bool:
        return self.saved or self.step >= self.cfg.steps or self.reached_target()

    def result(self) -> TrainResult:
        return TrainResult(self.model, pd.DataFrame(self.history), self.snapshots)


def start_run(
    task: Task,
    mcfg: ModelConfig,
    cfg: TrainConfig,
    out_dir: str | Path | None,
    resume: bool,
    command: str | None = None,
    overwrite: bool = False,
) -> TrainingRun:
    """A fresh model and optimizer; with ``out_dir`` (whose lock the caller holds) and ``resume``, the
    saved state of this run there, or its finished checkpoint (nothing left to train; see
    :func:`~mechinterp_arith.core.train_state.prepare_run_dir` for what is refused)."""
    if mcfg.d_vocab != task.d_vocab or mcfg.n_ctx < task.n_ctx:
        raise ValueError(
            f"model (vocab {mcfg.d_vocab}, n_ctx {mcfg.n_ctx}) does not fit {task.name} "
            f"(vocab {task.d_vocab}, n_ctx {task.n_ctx})"
        )
    if cfg.operand_lengths is not None:
        data.operand_length_set(task, cfg.operand_lengths)  # a range must end at the task's digits
    device = resolve_device(cfg.device)
    cfg = with_scheme_defaults(cfg, mcfg.positional)  # recorded resolved
    model = build_model(mcfg, device=device, task=task)
    run_id = {"task": task.to_dict(), "model": mcfg.to_dict(), "training": cfg.to_dict()}
    run = TrainingRun(task, cfg, model, make_optimizer(model, cfg), None, run_id, command)
    if out_dir is None:
        return run
    run.out = output_path(out_dir)  # links resolved; everything above is checked before the directory is touched
    found = prepare_run_dir(run.out, run_id, resume, overwrite)
    if found == "resume":
        meta = restore_state(run.out, run_id, model, run.optimizer)
        run.step, run.history, run.seconds = meta["step"], meta["history"], meta["seconds"]
        run.pending = pending_losses(meta, device)
        run.state_step = run.step
    elif found == "finished":  # trained to its end before: kept, not retrained
        load_weights(model, run.out / WEIGHTS)
        run.history, run.saved = read_history(run.out), True
        run.step = int(run.history[-1]["step"]) if run.history else cfg.steps
        model.eval()
    if found != "new":
        run.snapshots = resumed_snapshots(run.out, model, run.step)
    return run


def train_runs(
    runs: Sequence[TrainingRun],
    training: TrainingData,
    sets: EvalSets,
    callback: Callback | None = None,
    progress: bool = True,
    desc: str = "train",
    extra: dict[str, Any] | None = None,
) -> None:
    """Train every run to its end (``steps``, or the target reached), writing each one's
    checkpoint as it finishes when it has an output directory. ``extra``: more ``config.json`` keys."""
    active = [m for m in runs if not m.finished]
    if len({m.step for m in active}) > 1:
        raise CheckpointError(
            "cannot train these runs together: their saved states are at different steps "
            f"({sorted({m.step for m in active})}); resume each alone or pass resume=False"
        )
    cfg = runs[0].cfg
    forward = choose_forward([m.model for m in active], training, cfg.forward) if active else None
    runtime = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(training.inputs.device),
        "training_forward": "bridge" if forward is None else "stacked",
    }
    extra = {**(extra or {}), "runtime": runtime}
    bar = tqdm(
        total=cfg.steps, initial=active[0].step if active else cfg.steps, disable=not progress, desc=desc, unit="step"
    )
    t0, losses = time.perf_counter(), resumed_losses(active)
    last_save, writes = time.monotonic(), any(m.out is not None for m in runs)
    for m in active:
        m.model.train()
    while active:
        losses.append(train_step(active, training, forward))
        bar.update(1)
        snapshot = any(m.cfg.snapshot_every and m.step % m.cfg.snapshot_every == 0 for m in active)
        save = writes and time.monotonic() - last_save >= STATE_EVERY_S
        evaluate = active[0].step % cfg.eval_every == 0 or active[0].step == cfg.steps
        if snapshot or save or evaluate:
            check_finite(active, losses)  # nothing NaN or infinite is ever written
        for m in active:
            _maybe_snapshot(m)
        if save:
            _save_states(active, losses, t0)  # between evaluations too, so a kill loses at most a minute
            last_save = time.monotonic()
        if evaluate:
            _evaluate_all(active, sets, mean_losses(losses), t0, callback)
            bar.set_postfix_str(progress_text(runs))
            if any(m.finished for m in active):
                for m in active:
                    if m.finished:
                        _finish(m, extra)
                active = [m for m in active if not m.finished]
                if forward is not None and active:  # the same forward for the rest (checked once, at the start)
                    forward = StackedForward([m.model for m in active])
            t0, losses, last_save = time.perf_counter(), [], time.monotonic()
    bar.close()
    for m in runs:
        if not m.saved:
            _finish(m, extra)


def check_finite(runs: Sequence[TrainingRun], losses: list[Tensor]) -> None:
    """:class:`Diverged` naming the runs whose losses since the last evaluation (``losses``: one [K]
    tensor per step) or weights hold NaN or infinite values."""
    bad = torch.zeros(len(runs), dtype=torch.bool)
    if losses:
        bad |= ~torch.isfinite(torch.stack(losses)).all(0).cpu()
    for i, m in enumerate(runs):
        bad[i] |= not all(bool(torch.isfinite(p).all()) for p in m.model.parameters())
    if not bad.any():
        return
    m = runs[int(bad.nonzero()[0])]
    who = "the loss" if len(runs) == 1 else f"the loss of seed(s) {[x.cfg.seed for x, b in zip(runs, bad) if b]}"
    if m.out is None:
        kept = ""
    elif m.state_step is None:
        kept = f"nothing was saved in {m.out}; "
    else:
        kept = f"{m.out} keeps the last good state (step {m.state_step}); "
    raise Diverged(
        f"training diverged at step {m.step}: {who} became NaN or infinite (learning rate {m.cfg.lr:g}); "
        f"{kept}lower --lr (or lengthen --warmup) and train again with --no-resume"
    )


def resumed_losses(runs: Sequence[TrainingRun]) -> list[Tensor]:
    """The losses since the last evaluation that resumed runs saved, one [K] tensor per step
    (runs training together are at the same step, so they saved as many)."""
    if not runs or not runs[0].pending:
        return []
    if len({len(m.pending) for m in runs}) > 1:
        raise CheckpointError("cannot train these runs together: their saved states hold losses of different steps")
    return [torch.stack(step) for step in zip(*(m.pending for m in runs))]


def _save_states(runs: Sequence[TrainingRun], losses: list[Tensor], t0: float) -> None:
    """Save each run's resumable state now, with its losses since the last evaluation."""
    elapsed = time.perf_counter() - t0
    per_run = torch.stack(losses).t().tolist() if losses else [[] for _ in runs]
    for m, pending in zip(runs, per_run):
        if m.out is not None:
            save_state(m.out, m.run_id, m.model, m.optimizer, m.step, m.history, pending, m.seconds + elapsed)
            m.state_step = m.step


def mean_losses(losses: list[Tensor]) -> list[float]:
    """Each run's mean batch loss since the last evaluation (``losses``: one [K] tensor per step),
    reduced run by run, so a run's value does not depend on K."""
    return torch.stack(losses).t().contiguous().mean(1).tolist()


def progress_text(runs: Sequence[TrainingRun]) -> str:
    """The progress bar's note: loss, ID and OOD exact of one run; best/median/worst of several."""
    rows = [m.history[-1] for m in runs if m.history]
    if not rows:
        return ""
    if len(runs) == 1:
        r = rows[0]
        return f"loss={r['loss']:.4f}, id={r['id_exact']:.3f}, ood={r.get('ood_exact', float('nan')):.3f}"
    text = f"{sum(m.finished for m in runs)}/{len(runs)} done, id={spread([r['id_exact'] for r in rows])}"
    if all("ood_exact" in r for r in rows):
        text += f", ood={spread([r['ood_exact'] for r in rows])}"
    return text


def spread(values: Sequence[float]) -> str:
    """``best/median/worst`` of scores, 3 decimals."""
    return f"{max(values):.3f}/{statistics.median(values):.3f}/{min(values):.3f}"


def _maybe_snapshot(m: TrainingRun) -> None:
    every = m.cfg.snapshot_every
    if every and m.step % every == 0:
        m.snapshots[m.step] = weights_of(m.model)
        if m.out is not None:
            snapshot_path(m.out, m.step).parent.mkdir(exist_ok=True)
            atomic_save_tensors(m.snapshots[m.step], snapshot_path(m.out, m.step))


def _evaluate_all(
    runs: Sequence[TrainingRun], sets: EvalSets, losses: list[float], t0: float, callback: Callback | None
) -> None:
    """Score every run, then append the history rows (``elapsed_s``: wall seconds since the run
    started, evaluations included), save the resumable states and call ``callback``."""
    rows = [_score(m, sets, loss) for m, loss in zip(runs, losses)]
    elapsed = time.perf_counter() - t0
    for m, row in zip(runs, rows):
        m.seconds += elapsed
        row["elapsed_s"] = round(m.seconds, 3)
        m.history.append(row)
        if m.out is not None:
            save_state(m.out, m.run_id, m.model, m.optimizer, m.step, m.history, seconds=m.seconds)
            m.state_step = m.step
    for m, row in zip(runs, rows):
        if callback is not None:
            callback(m.step, m.model, row)


def _score(m: TrainingRun, sets: EvalSets, loss: float) -> dict[str, Any]:
    """The history row of run ``m`` now: ID (and OOD) exact on the samples, and on all held-out
    pairs when the sample reached the target (kept only if they reach it too) or training ends here."""
    row = {"step": m.step, "loss": loss, "lr": lr_at(max(0, m.step - 1), m.cfg, m.anneal_from)}
    m.model.eval()  # the decoder's checked plain forward is then built once for all the sets below
    row["id_exact"] = accuracy(m.model, m.task, *sets.id_sample)["exact"]
    if sets.ood is not None:
        row["ood_exact"] = accuracy(m.model, m.task, *sets.ood)["exact"]
    target, last = m.cfg.target_accuracy, m.step >= m.cfg.steps
    if last or (target is not None and row["id_exact"] >= target):
        whole = held_out_exact(m.model, m.task, sets.held_out, None if last else target)
        if whole is not None:
            row["held_out_exact"] = whole
    m.model.train()
    return row


def held_out_exact(
    model: TransformerBridge, task: Task, pairs: Pairs, target: float | None = None, chunk: int = HELD_OUT_CHUNK
) -> float | None:
    """Exact match on all ``pairs``, decoded ``chunk`` at a time; with ``target``, None as soon as
    more pairs are wrong than reaching it allows (a failed check costs one chunk, not the whole set)."""
    a, b = pairs
    allowed = len(a) if target is None else math.floor((1 - target) * len(a) + 1e-9)
    wrong = 0
    for i in range(0, len(a), chunk):
        answers = generate(model, task, a[i : i + chunk], b[i : i + chunk]).answers
        wrong += int((answers != task.apply(a[i : i + chunk], b[i : i + chunk])).sum())
        if wrong > allowed:
            return None
    return round((len(a) - wrong) / len(a), 6) if len(a) else float("nan")


def _finish(m: TrainingRun, extra: dict[str, Any]) -> None:
    m.model.eval()
    if m.out is not None:
        save_checkpoint(
            m.out,
            m.model,
            m.task,
            m.model_config,
            m.cfg.to_dict(),
            m.history,
            command=m.command,
            extra=extra,
            snapshots={step: snapshot_path(m.out, step) for step in m.snapshots},
        )
    m.saved = True
