"""Checkpoint directories: ``config.json`` + ``model.safetensors`` + ``metrics.json``.

Writes replace the whole directory atomically under a lock (``core/dirswap.py``, ``core/locks.py``),
loading never unpickles, the JSON files are read through one schema (``core/checkpoint_schema.py``)
and every problem is one :class:`CheckpointError` naming the file and what is wrong with it.

>>> ckpt = load("add3")                       # a shipped checkpoint, by name
>>> ckpt.predict([349, 1349], [705, 705]).tolist()
[1054, 1054]
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from .checkpoint_schema import FORMAT_VERSION, check_config, check_history, check_metrics, parse_json
from .dirswap import leftovers, recover, replace_dir, staging_dir
from .files import errors_naming, link_or_copy, require_regular_file, strict_json
from .locks import exclusive, output_path
from .model import ModelConfig, build_model, model_device, resolve_device
from .numbers import OperandsLike, Values, as_operands, digit_count
from .tasks import Task
from .version import __version__

CONFIG, WEIGHTS, METRICS, SNAPSHOTS = "config.json", "model.safetensors", "metrics.json", "snapshots"
STATE_FILE = "train_state.safetensors"  # a training run's resumable state (core/train_state.py)
OWN_FILES = {CONFIG, WEIGHTS, METRICS, SNAPSHOTS, STATE_FILE, "train_state.json", ".DS_Store"}
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")
_SNAPSHOT_NAME = re.compile(r"step_(\d+)\.safetensors")


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed, corrupt or inconsistent."""


@dataclass
class Checkpoint:
    """A loaded model with its task: what every analysis takes.

    Attributes:
        model: the TransformerLens bridge, in eval mode.
        task: the :class:`~mechinterp_arith.core.tasks.Task` it was trained on.
        model_config: its :class:`~mechinterp_arith.core.model.ModelConfig`.
        config: the whole ``config.json`` (training config, command, version).
        history: training metrics rows (``metrics.json``), possibly empty.
        path: where it was loaded from (None for in-memory models).
    """

    model: TransformerBridge
    task: Task
    model_config: ModelConfig
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    _snapshots: dict[int, TransformerBridge] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.task.name

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def prompt_tokens(self, a: OperandsLike, b: OperandsLike) -> Int[Tensor, "batch pos"]:
        """Everything before the first answer token, on the model's device: [batch, prompt_len]."""
        if not self.task.fixed_length:
            raise ValueError("prompt_tokens needs a fixed-length (padded) format")
        tokens, _ = self.task.encode_batch(as_operands(a), as_operands(b))
        return tokens[:, : self.task.prompt_len].to(self.device)

    def predict(self, a: OperandsLike, b: OperandsLike) -> Values:
        """The model's greedy answers: a numpy array of Python ints (any size; -1 when unreadable), so
        ``ckpt.predict([a], [b])[0] == a + b`` compares with Python's own answer. Operands longer than
        the format's width are read in a format as wide as the longest (:meth:`for_length`; NotApplicable
        naming the limit where the scheme cannot)."""
        from .decoding import generate

        a, b = as_operands(a), as_operands(b)
        longest = int(digit_count(np.concatenate([a, b])).max()) if len(a) and len(b) else 0
        at = self.for_length(longest)
        return generate(at.model, at.task, a, b).answers

    def widened(self, width: int) -> Checkpoint:
        """The same weights reading operands of up to ``width`` digits: the task at that width (same
        operation, format, BOS and padding) and a copy of the model with its context and position rule
        widened (:func:`~mechinterp_arith.core.widening.widen`); ``self`` when ``width`` is its own.
        NotApplicable, naming the limit, where the scheme's position table cannot hold the wider rows
        (learned: no widening past ``n_ctx``).

        >>> wide = load("add3").widened(6)                  # doctest: +SKIP
        NotApplicable: learned positions index the table by token: ...
        """
        from .widening import widen

        if width == self.task.width:
            return self
        model, task = widen(self.model, self.model_config, self.task, width)
        return Checkpoint(model, task, self.model_config, self.config, self.history, self.path)

    def for_length(self, m: int) -> Checkpoint:
        """The checkpoint that reads ``m``-digit operands: ``self`` when its format holds them, else
        :meth:`widened` to width ``m``."""
        return self if m <= self.task.width else self.widened(m)

    def snapshot_steps(self) -> list[int]:
        """Training steps with a saved snapshot (for training-dynamics analyses)."""
        return sorted(snapshot_files(self.path)) if self.path is not None else []

    def load_snapshot(self, step: int) -> TransformerBridge:
        """A bridge (eval mode) holding the weights saved at ``step``. Loaded once per checkpoint
        object and shared by every caller: copy it before changing its weights."""
        if step in self._snapshots:
            return self._snapshots[step]
        path = snapshot_files(self.path).get(step) if self.path else None
        if path is None:
            raise CheckpointError(f"no snapshot for step {step}; available: {self.snapshot_steps()}")
        model = build_model(self.model_config, device=self.device, task=self.task)
        load_weights(model, path)
        self._snapshots[step] = model.eval()
        return self._snapshots[step]


# ---- writing -------------------------------------------------------------------------------------
def weights_of(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's parameters by TL name (what ``model.safetensors`` holds)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def snapshot_path(path: Path, step: int) -> Path:
    """Where a checkpoint (or a training run) in ``path`` keeps the weights of ``step``."""
    return Path(path) / SNAPSHOTS / f"step_{step:07d}.safetensors"


def is_temporary(file: Path) -> bool:
    """A hidden ``.NAME.<random>.tmp`` that an atomic write of a checkpoint file or a snapshot
    (``core/files.py``) leaves when its process dies: never part of a checkpoint."""
    name = file.name
    return (
        name.startswith(".")
        and name.endswith(".tmp")
        and (name.startswith(".step_") or any(name.startswith(f".{own}.") for own in OWN_FILES))
    )


def remove_temporaries(path: Path) -> None:
    """Delete the temporaries (:func:`is_temporary`) in ``path`` and ``path/snapshots``."""
    for folder in (path, path / SNAPSHOTS):
        for f in folder.iterdir() if folder.is_dir() else ():
            if is_temporary(f) and f.is_file():
                f.unlink()


def check_replaceable(path: Path) -> None:
    """CheckpointError unless ``path`` is absent or a directory holding only checkpoint and training
    files: a writer never replaces a folder of anything else."""
    if path.resolve() == Path.cwd() or path.resolve() in Path.cwd().parents:
        raise CheckpointError(f"{path} is the current directory or holds it; give a new directory for the output")
    if not path.exists():
        return
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; a checkpoint is a directory: choose another output")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in OWN_FILES and not is_temporary(p))
    if foreign:
        raise CheckpointError(
            f"{path} holds {foreign[0]!r}, which is not part of a checkpoint; refusing to "
            f"replace it: choose a new or empty directory"
        )


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    task: Task,
    model_config: ModelConfig,
    train_config: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    command: str | None = None,
    extra: dict[str, Any] | None = None,
    snapshots: Mapping[int, dict[str, Tensor] | Path] | None = None,
) -> Path:
    """Write a checkpoint directory and return its path.

    It replaces what ``path`` holds (a checkpoint or a training run; a folder of anything else is
    refused) so that ``path`` holds the old or the new checkpoint whatever instant the process
    dies (``core/dirswap.py``), under the lock of ``path`` (``core/locks.py``). ``snapshots``:
    step -> weights, or -> a snapshot file to link; nothing else is kept from the old directory.
    ``config.json`` and ``metrics.json`` are checked against their schema before anything is written.
    A ``path`` reached through a symbolic link is written where the link points (the link stays).
    """
    given, path = Path(path), output_path(path)
    config = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "task": task.to_dict(),
        "model": model_config.to_dict(),
        "training": train_config or {},
        "command": command,
        **(extra or {}),
    }
    try:
        check_config(json.loads(strict_json(config)))
        check_history(json.loads(strict_json(history or [])))
    except ValueError as e:
        raise CheckpointError(f"refusing to write {path / CONFIG}: {e}") from None
    with exclusive(path), errors_naming(path):
        recover_dir(path)
        check_replaceable(path)
        staging = staging_dir(path)
        try:
            _write_contents(staging, model, config, history or [], snapshots or {})
            replace_dir(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return given


def _write_contents(
    folder: Path,
    model: torch.nn.Module,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    snapshots: Mapping[int, dict[str, Tensor] | Path],
) -> None:
    save_file({k: v.contiguous() for k, v in weights_of(model).items()}, folder / WEIGHTS)
    (folder / CONFIG).write_text(strict_json(config, indent=2) + "\n")
    (folder / METRICS).write_text(strict_json({"history": history}, indent=1) + "\n")
    for step, state in sorted(snapshots.items()):
        (folder / SNAPSHOTS).mkdir(exist_ok=True)
        if isinstance(state, Path):
            link_or_copy(state, snapshot_path(folder, step))
        else:
            save_file({k: v.contiguous() for k, v in state.items()}, snapshot_path(folder, step))
    for f in folder.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)


def recover_dir(path: Path) -> None:
    """Finish or undo an interrupted replacement of the checkpoint directory ``path`` (hold its lock)."""
    try:
        recover(path, state_file=STATE_FILE, finished_file=WEIGHTS)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


# ---- reading -------------------------------------------------------------------------------------
CHECKPOINTS_ENV = "MECHINTERP_ARITH_CHECKPOINTS"  # a folder of checkpoint directories, searched first
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"  # package data: in every install


def shipped_checkpoint_dirs() -> list[Path]:
    """Where checkpoints are looked up by name, in order: ``$MECHINTERP_ARITH_CHECKPOINTS`` (when
    set), the shipped ones (``mechinterp_arith/checkpoints``, package data of every install: editable,
    ``pip install CLONE`` or a wheel), then ``./checkpoints``."""
    dirs = []
    if os.environ.get(CHECKPOINTS_ENV):
        dirs.append(Path(os.environ[CHECKPOINTS_ENV]))
    dirs.append(SHIPPED_DIR)
    dirs.append(Path.cwd() / "checkpoints")
    return dirs


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A directory for a shipped name (``"add3"``) or a path; CheckpointError if neither exists."""
    p = Path(name_or_path)
    if p.suffix in PICKLE_SUFFIXES and p.is_file():
        raise CheckpointError(
            f"{p} is a pickled PyTorch file; checkpoints are directories with model.safetensors. "
            f"Convert foreign weights with `mechinterp-arith import {p} --from mingpt ...`"
        )
    if not p.exists() and leftovers(p):  # an interrupted replacement: finish or undo it
        with exclusive(p):
            recover_dir(p)
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p} is a file; a checkpoint is a directory holding {CONFIG} and {WEIGHTS}")
    if len(p.parts) == 1:
        for d in shipped_checkpoint_dirs():
            if (d / str(name_or_path)).is_dir():
                return d / str(name_or_path)
    known = sorted(
        {q.name for d in shipped_checkpoint_dirs() if d.is_dir() for q in d.iterdir() if (q / CONFIG).is_file()}
    )
    raise CheckpointError(f"no checkpoint named or at {str(name_or_path)!r}; shipped: {', '.join(known) or 'none'}")


def snapshot_files(path: Path) -> dict[int, Path]:
    """Step -> file of every snapshot in ``path/snapshots``; CheckpointError names a misnamed one."""
    folder = Path(path) / SNAPSHOTS
    if not folder.is_dir():
        return {}
    files = {}
    for f in folder.glob("step_*.safetensors"):
        match = _SNAPSHOT_NAME.fullmatch(f.name)
        if match is None or int(match.group(1)) in files:
            raise CheckpointError(
                f"{f}: not a snapshot name (step_NNNNNNN.safetensors, one per step); rename or remove it"
            )
        files[int(match.group(1))] = f
    return files


def read_json(file: Path) -> Any:
    """The parsed JSON of a checkpoint's file (NaN read as null); CheckpointError naming it when it
    is not a regular file (a FIFO would block), not UTF-8 JSON, or nested too deeply to read."""
    try:
        return parse_json(require_regular_file(file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{file} is not a checkpoint file: its JSON is nested too deeply to read") from None
    except OSError as e:
        raise CheckpointError(f"{file} {e.strerror}") from None


def read_config(path: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory, checked against the schema
    (``core/checkpoint_schema.py``); CheckpointError names the file and the key."""
    f = path / CONFIG
    if not f.exists() and (path / STATE_FILE).exists():
        raise CheckpointError(
            f"{path} holds a training run that has not finished; run its train command again "
            f"to resume it (it is a checkpoint once it ends)"
        )
    if not f.exists():
        raise CheckpointError(f"{path} holds no {CONFIG}; is it a checkpoint directory?")
    config = read_json(f)
    try:
        check_config(config)
    except ValueError as e:
        raise CheckpointError(f"{f}: {e}") from None
    return config


def read_history(path: Path) -> list[dict[str, Any]]:
    """The training history in ``metrics.json`` ([] when absent), checked against the schema."""
    f = path / METRICS
    if not f.exists():
        return []
    try:
        return check_metrics(read_json(f))
    except ValueError as e:
        raise CheckpointError(f"{f}: {e}") from None


def load_weights(model: torch.nn.Module, file: Path) -> None:
    """Load a safetensors file into ``model`` after checking it (:func:`read_weights`)."""
    model.load_state_dict(read_weights(file, model), strict=True)


def read_weights(file: Path, model: torch.nn.Module) -> dict[str, Tensor]:
    """The tensors of a safetensors file, checked against ``model``: names, shapes, dtypes, finite
    values; CheckpointError names the file and the first problem."""
    try:
        require_regular_file(file)
    except OSError as e:
        raise CheckpointError(
            f"{file} is missing" if isinstance(e, FileNotFoundError) else f"{file} {e.strerror}"
        ) from None
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{file} is corrupt or truncated: not a readable safetensors file ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{file} does not match its config: missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{file}: {k} has shape {tuple(tensors[k].shape)} but the config implies {tuple(v.shape)}"
            )
        if tensors[k].dtype != v.dtype:
            raise CheckpointError(f"{file}: {k} has dtype {tensors[k].dtype}; expected {v.dtype}")
        if not torch.isfinite(tensors[k]).all():
            raise CheckpointError(f"{file}: {k} holds NaN or infinite values")
    return tensors


def load(name_or_path: str | Path, device: str | None = "auto") -> Checkpoint:
    """Load a shipped checkpoint by name (``"add3"``) or a checkpoint directory; model in eval mode."""
    path = resolve_checkpoint(name_or_path)
    for _ in range(3):  # a writer may replace the directory while we read it: read again, never mix
        before = path.stat().st_ino
        config = read_config(path)
        task, model_config, _ = check_config(config)
        history = read_history(path)
        snapshot_files(path)  # a misnamed snapshot is an error now, not in the middle of an analysis
        try:
            model = build_model(model_config, device=resolve_device(device), task=task)
        except ValueError as e:  # e.g. a position table too small for the task's IDs
            raise CheckpointError(f"{path / CONFIG}: invalid configuration ({e})") from None
        load_weights(model, path / WEIGHTS)
        if path.stat().st_ino == before:
            return Checkpoint(model.eval(), task, model_config, config, history, path)
    raise CheckpointError(f"{path} was replaced three times while being read; try again")
