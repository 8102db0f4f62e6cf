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

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from . import data
from .checkpoint import CheckpointError, atomic_save_tensors, atomic_write_text, save_checkpoint, weights_of
from .evaluate import accuracy
from .model import ModelConfig, build_model, fused_layernorm, resolve_device
from .tasks import END, Task

STATE_WEIGHTS, STATE_JSON = "train_state.safetensors", "train_state.json"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and bookkeeping settings (model architecture lives in ModelConfig)."""

    steps: int = 5000  # upper bound; training stops earlier at target_accuracy
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 200
    schedule: str = "cosine"  # or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0  # batch order
    data_seed: int = 0  # which pairs are train and test
    n_train: int | None = None  # default: the study's 10,000 (or 80% of all pairs when fewer)
    n_test: int | None = None
    eval_every: int = 250
    eval_n: int = 2000  # held-out ID pairs (and OOD pairs) scored at each evaluation
    ood_digits: int | None = None  # default n + 1 when the format holds it
    target_accuracy: float | None = None  # stop once held-out ID exact match reaches this
    snapshot_every: int | None = None  # keep weights every K steps for training-dynamics analyses
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for ``step`` (0-based): linear warmup, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> Int[Tensor, "batch"]:
    """The rows of step ``step``: a pure function of (seed, step), so resuming replays them exactly."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch_size,), generator=g)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (fused kernel: one op for all tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)


def answer_loss(logits, targets, mask) -> Tensor:
    """Mean cross-entropy over answer positions only."""
    return F.cross_entropy(logits[mask], targets[mask])


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
    mcfg = model_config or ModelConfig.for_task(task)
    cfg = train_config or TrainConfig()
    if mcfg.d_vocab != task.d_vocab or mcfg.n_ctx < task.n_ctx:
        raise ValueError(f"model (vocab {mcfg.d_vocab}, n_ctx {mcfg.n_ctx}) does not fit {task.name} "
                         f"(vocab {task.d_vocab}, n_ctx {task.n_ctx})")
    device = resolve_device(cfg.device)
    split = data.id_split(task, cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    train_data = TrainingData.build(task, split)
    inputs, targets, mask = (t.to(device) for t in (train_data.inputs, train_data.targets, train_data.loss_mask))
    eval_a, eval_b = split.test_a[: cfg.eval_n], split.test_b[: cfg.eval_n]
    ood_m = cfg.ood_digits or (task.digits + 1 if task.digits < task.width else None)
    ood_a, ood_b = data.ood_both(task, ood_m, cfg.eval_n, seed=cfg.data_seed) if ood_m else (None, None)

    model = build_model(mcfg, device=device)
    optimizer = make_optimizer(model, cfg)
    run_id = {"task": task.to_dict(), "model": mcfg.to_dict(), "training": cfg.to_dict()}
    step, history, snapshots = 0, [], {}
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / STATE_JSON).is_file():
            step, history = _restore_state(out, run_id, model, optimizer)
        snapshots = _saved_snapshots(out) if resume else {}

    def evaluate_now(loss_sum: float, loss_count: int) -> dict:
        row = {"step": step, "loss": loss_sum / max(1, loss_count), "lr": lr_at(max(0, step - 1), cfg)}
        row["id_exact"] = accuracy(model, task, eval_a, eval_b)["exact"]
        if ood_a is not None:
            row["ood_exact"] = accuracy(model, task, ood_a, ood_b)["exact"]
        row["elapsed_s"] = round(time.perf_counter() - t0 + (history[-1]["elapsed_s"] if history else 0.0), 3)
        return row

    reached = bool(history) and cfg.target_accuracy is not None and history[-1]["id_exact"] >= cfg.target_accuracy
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"train {task.name}", unit="step")
    loss_sum, loss_count = 0.0, 0
    model.train()
    while step < cfg.steps and not reached:
        rows = batch_indices(len(inputs), cfg.batch_size, cfg.seed, step).to(device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        with fused_layernorm(model):  # hooks are not used while training; see its docstring
            logits = model(inputs[rows])
        loss = answer_loss(logits, targets[rows], mask[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        bar.update(1)
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            snapshots[step] = weights_of(model)
            if out is not None:
                (out / "snapshots").mkdir(exist_ok=True)
                atomic_save_tensors(snapshots[step], out / "snapshots" / f"step_{step:07d}.safetensors")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = evaluate_now(loss_sum, loss_count)
            model.train()
            history.append(row)
            loss_sum, loss_count, t0 = 0.0, 0, time.perf_counter()
            bar.set_postfix(loss=f"{row['loss']:.4f}", id=f"{row['id_exact']:.3f}", ood=f"{row.get('ood_exact', float('nan')):.3f}")
            reached = cfg.target_accuracy is not None and row["id_exact"] >= cfg.target_accuracy
            if out is not None:
                _save_state(out, run_id, model, optimizer, step, history)
            if callback is not None:
                callback(step, model, row)
    bar.close()
    model.eval()
    if out is not None:
        save_checkpoint(out, model, task, mcfg, cfg.to_dict(), history, command=command)
    return TrainResult(model, pd.DataFrame(history), snapshots)


# ---- resumable state -----------------------------------------------------------------------------
def _save_state(out: Path, run_id: dict, model, optimizer, step: int, history: list[dict]) -> None:
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in weights_of(model).items()}
    for idx, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    atomic_save_tensors(tensors, out / STATE_WEIGHTS)
    meta = {"run": run_id, "step": step, "history": history, "param_groups": opt["param_groups"]}
    atomic_write_text(out / STATE_JSON, json.dumps(meta))


def _restore_state(out: Path, run_id: dict, model, optimizer) -> tuple[int, list[dict]]:
    try:
        meta = json.loads((out / STATE_JSON).read_text())
        tensors = load_file(str(out / STATE_WEIGHTS))
    except Exception as e:  # noqa: BLE001 - any unreadable state is one clear error
        raise CheckpointError(f"cannot resume from {out}: its training state is unreadable ({e})") from None
    if meta.get("run") != json.loads(json.dumps(run_id)):
        raise CheckpointError(
            f"cannot resume from {out}: it holds a run with different settings; pass resume=False "
            f"(CLI: --no-resume) or choose another --out"
        )
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), meta["history"]


def _saved_snapshots(out: Path) -> dict[int, dict[str, Tensor]]:
    folder = out / "snapshots"
    if not folder.is_dir():
        return {}
    return {int(p.stem.split("_")[1]): load_file(str(p)) for p in sorted(folder.glob("step_*.safetensors"))}
