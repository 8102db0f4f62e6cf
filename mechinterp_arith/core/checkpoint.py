"""Checkpoint directories: ``config.json`` + ``model.safetensors`` + ``metrics.json``.

Writes are atomic (a temporary sibling directory renamed into place), loading never unpickles,
and every problem is one :class:`CheckpointError` naming the file and what is wrong with it.

>>> ckpt = load("add3")                       # a shipped checkpoint, by name
>>> ckpt.predict([349, 1349], [705, 705]).tolist()
[1054, 1054]
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from jaxtyping import Int
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from .model import ModelConfig, build_model, resolve_device
from .tasks import Task, as_operands
from .version import __version__

CONFIG, WEIGHTS, METRICS, SNAPSHOTS = "config.json", "model.safetensors", "metrics.json", "snapshots"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")


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
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    path: Path | None = None
    _snapshots: dict[int, TransformerBridge] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.task.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_tokens(self, a: Sequence[int] | Tensor, b: Sequence[int] | Tensor) -> Int[Tensor, "batch pos"]:
        """Everything before the first answer token, on the model's device: [batch, prompt_len]."""
        if not self.task.fixed_length:
            raise ValueError("prompt_tokens needs a fixed-length (padded) format")
        tokens, _ = self.task.encode_batch(as_operands(a), as_operands(b))
        return tokens[:, : self.task.prompt_len].to(self.device)

    def predict(self, a: Sequence[int] | Tensor, b: Sequence[int] | Tensor) -> Int[Tensor, "batch"]:
        """The model's greedy answers as integers."""
        from .decoding import generate

        return generate(self.model, self.task, as_operands(a), as_operands(b)).answers

    def snapshot_steps(self) -> list[int]:
        """Training steps with a saved snapshot (for training-dynamics analyses)."""
        if self.path is None or not (self.path / SNAPSHOTS).is_dir():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in (self.path / SNAPSHOTS).glob("step_*.safetensors"))

    def load_snapshot(self, step: int) -> TransformerBridge:
        """A bridge (eval mode) holding the weights saved at ``step``. Loaded once per checkpoint
        object and shared by every caller: copy it before changing its weights."""
        if step in self._snapshots:
            return self._snapshots[step]
        path = self.path / SNAPSHOTS / f"step_{step:07d}.safetensors" if self.path else None
        if path is None or not path.is_file():
            raise CheckpointError(f"no snapshot for step {step}; available: {self.snapshot_steps()}")
        model = build_model(self.model_config, device=self.device, task=self.task)
        _load_weights(model, path)
        self._snapshots[step] = model.eval()
        return self._snapshots[step]


# ---- writing -------------------------------------------------------------------------------------
def weights_of(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's parameters by TL name (what ``model.safetensors`` holds)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    task: Task,
    model_config: ModelConfig,
    train_config: dict | None = None,
    history: list[dict] | None = None,
    command: str | None = None,
    extra: dict | None = None,
    snapshots: dict[int, dict[str, Tensor]] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (replacing any existing one) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": 1,
        "package_version": __version__,
        "task": task.to_dict(),
        "model": model_config.to_dict(),
        "training": train_config or {},
        "command": command,
        **(extra or {}),
    }
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o755)
    try:
        save_file({k: v.contiguous() for k, v in weights_of(model).items()}, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / METRICS).write_text(json.dumps({"history": history or []}, indent=1) + "\n")
        if path.is_dir() and (path / SNAPSHOTS).is_dir() and not snapshots:
            shutil.copytree(path / SNAPSHOTS, tmp / SNAPSHOTS)
        for step, state in (snapshots or {}).items():
            (tmp / SNAPSHOTS).mkdir(exist_ok=True)
            save_file({k: v.contiguous() for k, v in state.items()}, tmp / SNAPSHOTS / f"step_{step:07d}.safetensors")
        for f in tmp.rglob("*"):
            f.chmod(0o755 if f.is_dir() else 0o644)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_into_place(tmp: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


# ---- reading -------------------------------------------------------------------------------------
def shipped_checkpoint_dirs() -> list[Path]:
    """Where shipped checkpoints are looked up by name, in order."""
    dirs = []
    if os.environ.get("MECHINTERP_ARITH_CHECKPOINTS"):
        dirs.append(Path(os.environ["MECHINTERP_ARITH_CHECKPOINTS"]))
    dirs.append(Path(__file__).resolve().parents[2] / "checkpoints")
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
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p} is a file; a checkpoint is a directory holding {CONFIG} and {WEIGHTS}")
    if len(p.parts) == 1:
        for d in shipped_checkpoint_dirs():
            if (d / str(name_or_path)).is_dir():
                return d / str(name_or_path)
    known = sorted({q.name for d in shipped_checkpoint_dirs() if d.is_dir() for q in d.iterdir() if (q / CONFIG).is_file()})
    raise CheckpointError(f"no checkpoint named or at {str(name_or_path)!r}; shipped: {', '.join(known) or 'none'}")


def read_config(path: Path) -> dict:
    """The parsed ``config.json`` of a checkpoint directory; CheckpointError when absent or malformed."""
    f = path / CONFIG
    if not f.is_file():
        raise CheckpointError(f"{path} holds no {CONFIG}; is it a checkpoint directory?")
    try:
        config = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{f} is not valid JSON ({e})") from None
    for key in ("task", "model"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{f} has no {key!r} section")
    return config


def _load_weights(model: torch.nn.Module, file: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing")
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
        if not torch.isfinite(tensors[k]).all():
            raise CheckpointError(f"{file}: {k} holds NaN or infinite values")
    model.load_state_dict(tensors, strict=True)


def load(name_or_path: str | Path, device: str | None = "auto") -> Checkpoint:
    """Load a shipped checkpoint by name (``"add3"``) or a checkpoint directory; model in eval mode."""
    path = resolve_checkpoint(name_or_path)
    config = read_config(path)
    try:
        task = Task.from_dict(config["task"])
        model_config = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: invalid configuration ({e})") from None
    if model_config.d_vocab != task.d_vocab or model_config.n_ctx < task.n_ctx:
        raise CheckpointError(
            f"{path / CONFIG}: model (vocab {model_config.d_vocab}, context {model_config.n_ctx}) does not fit "
            f"task {task.name} in format {task.format!r} (vocab {task.d_vocab}, context {task.n_ctx})"
        )
    target = resolve_device(device)
    try:
        model = build_model(model_config, device=target, task=task)
    except ValueError as e:  # e.g. a position table too small for the task's IDs
        raise CheckpointError(f"{path / CONFIG}: invalid configuration ({e})") from None
    _load_weights(model, path / WEIGHTS)
    history: list[dict[str, Any]] = []
    if (path / METRICS).is_file():
        try:
            history = json.loads((path / METRICS).read_text()).get("history", [])
        except (json.JSONDecodeError, AttributeError) as e:
            raise CheckpointError(f"{path / METRICS} is not valid JSON ({e})") from None
    return Checkpoint(model.eval(), task, model_config, config, history, path)
