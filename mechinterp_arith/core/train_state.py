"""The resumable state of a training run in its output directory: weights, optimizer, step, history.

``train_state.safetensors`` (model and AdamW tensors) and ``train_state.json`` (the run's settings,
step, history and optimizer hyper-parameters) are written atomically at every evaluation; a run
started again with the same settings continues from them and ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from .checkpoint import CheckpointError, weights_of
from .files import atomic_save_tensors, atomic_write_text

STATE_WEIGHTS, STATE_JSON = "train_state.safetensors", "train_state.json"


def save_state(out: Path, run_id: dict, model, optimizer, step: int, history: list[dict]) -> None:
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in weights_of(model).items()}
    for idx, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    atomic_save_tensors(tensors, out / STATE_WEIGHTS)
    meta = {"run": run_id, "step": step, "history": history, "param_groups": opt["param_groups"]}
    atomic_write_text(out / STATE_JSON, json.dumps(meta))


def restore_state(out: Path, run_id: dict, model, optimizer) -> tuple[int, list[dict]]:
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


def saved_snapshots(out: Path) -> dict[int, dict[str, Tensor]]:
    folder = out / "snapshots"
    if not folder.is_dir():
        return {}
    return {int(p.stem.split("_")[1]): load_file(str(p)) for p in sorted(folder.glob("step_*.safetensors"))}
