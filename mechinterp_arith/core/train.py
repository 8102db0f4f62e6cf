"""Training in place: :func:`train` trains one model; K models (a seed ensemble, one batched
computation) are :func:`~mechinterp_arith.core.ensemble.train_ensemble`'s.

>>> from mechinterp_arith import Task, train, TrainConfig
>>> model, history, snapshots = train(Task("add", digits=2), train_config=TrainConfig(steps=300))

Loss is cross-entropy on answer tokens only. AdamW with linear warmup and a cosine (or constant)
schedule, gradient clipping. Batches are a pure function of ``(seed, step)`` and the optimizer
state is saved with the weights, so a run resumed after an interruption ends with the same
weights as an uninterrupted one. The loop is :mod:`~mechinterp_arith.core.train_loop`, a step
:mod:`~mechinterp_arith.core.train_step`, ensembles :mod:`~mechinterp_arith.core.ensemble`; the
default recipe and its measured speed are in docs/training.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from .ensemble import EnsembleResult, train_ensemble
from .model import ModelConfig
from .tasks import Task
from .threads import thread_limit
from .train_config import TrainConfig, lr_at
from .train_loop import Callback, TrainResult, make_optimizer, prepare_data, start_run, train_runs
from .train_state import with_out_dir_lock
from .train_step import TrainingData, answer_loss, batch_indices

__all__ = [
    "EnsembleResult",
    "TrainResult",
    "TrainingData",
    "answer_loss",
    "batch_indices",
    "lr_at",
    "make_optimizer",
    "train",
    "train_ensemble",
]


@with_out_dir_lock  # one writer per out_dir: the lock is held while train runs
def train(
    task: Task,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    command: str | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    overwrite: bool = False,
    seeds: Sequence[int] | None = None,
    threads: int | None = None,
) -> TrainResult | EnsembleResult:
    """Train a hooked model on ``task`` in place and return ``(model, history, snapshots)``.

    With ``out_dir`` the run keeps a resumable state there while it trains and ends by writing a
    checkpoint directory (config.json, model.safetensors, metrics.json, snapshots/). With
    ``resume=True`` an interrupted run in ``out_dir`` continues from its last saved state (saved at
    every evaluation and every minute); ``resume=False`` starts over. A finished checkpoint in
    ``out_dir`` is returned as it is when it is this run's (with ``resume``), replaced only with
    ``overwrite=True`` otherwise; another writer of ``out_dir`` is refused.
    ``callback(step, model, row)`` is called after every evaluation. ``threads``: torch CPU threads
    while training (default ``$MECHINTERP_ARITH_THREADS`` or 1; see :mod:`~mechinterp_arith.core.threads`).
    ``seeds`` is deprecated: K models are :func:`~mechinterp_arith.core.ensemble.train_ensemble`'s
    (it returns an :class:`EnsembleResult`, as ``train(seeds=...)`` still does, with a warning).
    Without ``train_config`` the position scheme's recipe trains (:meth:`TrainConfig.for_scheme`).
    """
    mcfg = model_config or ModelConfig.for_task(task)
    cfg = train_config or TrainConfig.for_scheme(mcfg.positional)
    if seeds is not None:
        warnings.warn(
            "train(seeds=...) is deprecated: train K seeds with train_ensemble(task, model_config, "
            "train_config, seeds, ...); train() trains one model",
            DeprecationWarning,
            stacklevel=3,
        )
        return train_ensemble(
            task,
            mcfg,
            cfg,
            seeds,
            out_dir,
            resume=resume,
            command=command,
            callback=callback,
            progress=progress,
            threads=threads,
            overwrite=overwrite,
        )
    with thread_limit(threads):
        run = start_run(task, mcfg, cfg, out_dir, resume, command, overwrite)
        training, sets = prepare_data(task, run.cfg)
        train_runs([run], training, sets, callback, progress, desc=f"train {task.name}")
    return run.result()
