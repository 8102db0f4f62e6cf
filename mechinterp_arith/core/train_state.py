"""A training run's output directory while it trains: who may write there, and its resumable state.

``train_state.safetensors`` holds the model and AdamW tensors, and in its metadata the run's
settings, step, history and the losses since the last evaluation: one file, replaced atomically,
so weights and step can never disagree. It is written at every evaluation and at least every
:data:`STATE_EVERY_S` seconds; a run started again with the same settings continues from it and
ends with the same weights (and history) as an uninterrupted run.

:func:`prepare_run_dir` decides, before any training, what the directory may hold: nothing, an
interrupted run of these settings (resumed), an interrupted run discarded by ``resume=False``,
or a finished checkpoint: of this run, returned as it is (nothing is left to train); of another,
replaced only with ``overwrite=True``, as is part of a checkpoint (weights or metrics without
``config.json``: no writer of ours leaves that). A fresh run never keeps another run's snapshots.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from .checkpoint import (
    CONFIG,
    METRICS,
    SNAPSHOTS,
    STATE_FILE,
    WEIGHTS,
    CheckpointError,
    check_replaceable,
    read_config,
    read_weights,
    recover_dir,
    remove_temporaries,
    snapshot_files,
    weights_of,
)
from .checkpoint_schema import check_history
from .dirswap import replace_dir, staging_dir
from .files import atomic_save_tensors, require_regular_file, strict_json
from .locks import exclusive
from .model import model_device
from .tasks import Task

STATE_EVERY_S = 60.0  # the state is also saved when this long has passed since the last save
LEGACY_STATE = "train_state.json"  # version 0.1.0 kept the metadata in a second file

P = ParamSpec("P")
R = TypeVar("R")


def with_out_dir_lock(train_fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``train_fn`` runs holding the lock of its ``out_dir`` argument (when not None),
    so a second writer of the same directory is refused before any work (``core/locks.py``)."""
    signature = inspect.signature(train_fn)

    @functools.wraps(train_fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        out_dir = signature.bind(*args, **kwargs).arguments.get("out_dir")
        if out_dir is None:
            return train_fn(*args, **kwargs)
        with exclusive(Path(out_dir)):
            return train_fn(*args, **kwargs)

    return wrapper


def prepare_run_dir(out: Path, run_id: dict[str, Any], resume: bool, overwrite: bool) -> str:
    """Make ``out`` ready for the run ``run_id`` (hold its lock) and say what it holds for it:
    ``"new"`` (start from step 0), ``"resume"`` (an interrupted state of this run) or ``"finished"``
    (this run's finished checkpoint, with ``resume``: there is nothing left to train).

    Refuses (CheckpointError) a file, a folder of other things, a finished checkpoint of another
    run (or with ``resume=False``) without ``overwrite``, and an interrupted run of other settings
    without ``resume=False``.
    """
    recover_dir(out)
    check_replaceable(out)
    remove_temporaries(out)  # half-written files of a dead writer (we hold the lock)
    if (out / CONFIG).exists() and not (out / STATE_FILE).exists():
        finished, name = _finished_run(out)
        same_run = finished == json.loads(strict_json(run_id))
        if same_run and resume and not overwrite:
            return "finished"
        if not overwrite:
            what = "this run (resume=False starts it over)" if same_run else f"another run ({name})"
            raise CheckpointError(
                f"{out} holds the finished checkpoint of {what}; pass overwrite=True "
                f"(CLI: --overwrite) to replace it, or choose another output"
            )
        replace_dir(staging_dir(out), out)  # atomically empty: the old checkpoint or nothing, never half
    elif resume and (out / STATE_FILE).exists():
        return "resume"
    elif not (out / STATE_FILE).exists() and ((out / WEIGHTS).exists() or (out / METRICS).exists()) and not overwrite:
        raise CheckpointError(  # no writer of ours leaves these without config.json (dirswap): not ours to delete
            f"{out} holds part of a checkpoint ({WEIGHTS if (out / WEIGHTS).exists() else METRICS} without "
            f"{CONFIG}); pass overwrite=True (CLI: --overwrite) to replace it, or choose another output"
        )
    else:
        for name in (STATE_FILE, LEGACY_STATE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / SNAPSHOTS, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return "new"


def _finished_run(out: Path) -> tuple[dict[str, Any] | None, str]:
    """The run (task, model, training) that the finished checkpoint in ``out`` records, and its task's name."""
    try:
        config = read_config(out)
    except CheckpointError:
        return None, "an unreadable checkpoint"
    return {key: config.get(key) for key in ("task", "model", "training")}, Task.from_dict(config["task"]).name


def save_state(
    out: Path,
    run_id: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict[str, Any]],
    pending_losses: Sequence[float] = (),
    seconds: float = 0.0,
) -> None:
    """Write the resumable state (one atomic file). ``pending_losses``: losses since the last evaluation."""
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in weights_of(model).items()}
    for idx, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    meta = {
        "run": run_id,
        "step": step,
        "history": history,
        "param_groups": opt["param_groups"],
        "pending_losses": list(pending_losses),
        "seconds": seconds,
    }
    atomic_save_tensors(tensors, out / STATE_FILE, metadata={"state": strict_json(meta)})


def _read_state(out: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    file = out / STATE_FILE
    if (out / LEGACY_STATE).exists():
        raise CheckpointError(
            f"cannot resume from {out}: its training state was written by version 0.1.0; "
            f"start over with resume=False (CLI: --no-resume)"
        )
    try:
        require_regular_file(file)  # a FIFO would block safe_open forever
    except OSError as e:
        raise CheckpointError(f"cannot resume from {out}: {file} {e.strerror}") from None
    try:
        with safe_open(str(file), "pt") as f:
            meta = json.loads((f.metadata() or {})["state"])
        tensors = load_file(str(file))
        check_history(meta["history"])
        if not isinstance(meta["step"], int) or not all(
            isinstance(x, (float, type(None))) for x in meta["pending_losses"]
        ):
            raise ValueError("step or pending losses of the wrong type")
    except Exception as e:
        raise CheckpointError(
            f"cannot resume from {out}: its training state {file.name} is unreadable "
            f"({type(e).__name__}: {e}); start over with resume=False (CLI: --no-resume)"
        ) from None
    return meta, tensors


def saved_progress(out: Path) -> dict[str, Any]:
    """The metadata of the resumable state in ``out`` (``step``, ``history``, ``run``, ...), without
    loading it into a model; CheckpointError when there is none or it is unreadable."""
    return _read_state(Path(out))[0]


def restore_state(
    out: Path, run_id: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load the saved state of ``out`` into ``model`` and ``optimizer``; its metadata (step, history,
    pending_losses, seconds). CheckpointError when unreadable or from other settings."""
    meta, tensors = _read_state(out)
    if meta.get("run") != json.loads(strict_json(run_id)):
        raise CheckpointError(
            f"cannot resume from {out}: it holds a run with different settings; pass resume=False "
            f"(CLI: --no-resume) or choose another --out"
        )
    device = model_device(model)
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"cannot resume from {out}: its training state does not fit this model "
            f"({str(e).splitlines()[0]}); start over with resume=False (CLI: --no-resume)"
        ) from None
    return meta


def resumed_snapshots(out: Path, model: torch.nn.Module, step: int) -> dict[int, dict[str, Tensor]]:
    """The run's snapshots up to ``step``, each checked against ``model`` (CheckpointError names a
    corrupt one); later ones are deleted: the resumed run writes them again."""
    snapshots = {}
    for s, file in sorted(snapshot_files(out).items()):
        if s > step:
            file.unlink()
        else:
            snapshots[s] = read_weights(file, model)
    return snapshots


def pending_losses(meta: dict[str, Any], device: torch.device | str) -> list[Tensor]:
    """The losses since the last evaluation, as the 0-d tensors the training loop averages."""
    return [
        torch.tensor(math.nan if x is None else x, dtype=torch.float32, device=device) for x in meta["pending_losses"]
    ]
