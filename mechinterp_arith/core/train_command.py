"""The ``mechinterp-arith train`` command line that trains exactly a given (task, model, training) setting.

Every setting is written out, defaults included, so the command reproduces the run whatever the
defaults of a later version are. Seed ensembles record it for each member (``OUT/seed_S``).

>>> from mechinterp_arith import Task, ModelConfig, TrainConfig
>>> task = Task("add", 2)
>>> cmd = train_command(task, ModelConfig.for_task(task, seed=3), TrainConfig(seed=3), "runs/seed_3")
>>> cmd.startswith("mechinterp-arith train --task add --digits 2 --format paper"), "--model-seed 3" in cmd
(True, True)
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .model import ModelConfig
from .tasks import Task
from .train_config import OFF, OFF_WHEN_NONE, TrainConfig

# config field -> CLI option (tests/unit/test_train_command.py parses the result back into the same configs)
TASK_FLAGS = {"op": "--task", "digits": "--digits", "format": "--format", "width": "--width", "modulus": "--modulus"}
MODEL_FLAGS = {
    "n_layers": "--layers",
    "n_heads": "--heads",
    "d_model": "--d-model",
    "d_mlp": "--d-mlp",
    "act_fn": "--act",
    "positional": "--positional",
    "n_ctx": "--n-ctx",
    "seed": "--model-seed",
}
MODEL_FROM_TASK = ("d_vocab",)  # ModelConfig.for_task sets it from the task
TRAIN_FLAGS = {
    "steps": "--steps",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "betas": "--betas",
    "warmup": "--warmup",
    "schedule": "--schedule",
    "min_lr_ratio": "--min-lr-ratio",
    "grad_clip": "--grad-clip",
    "seed": "--seed",
    "data_seed": "--data-seed",
    "n_train": "--n-train",
    "n_test": "--n-test",
    "eval_every": "--eval-every",
    "eval_n": "--eval-n",
    "ood_digits": "--ood-digits",
    "target_accuracy": "--target-accuracy",
    "anneal_at": "--anneal-at",
    "anneal_steps": "--anneal-steps",
    "snapshot_every": "--snapshot-every",
    "device": "--device",
    "batch_rng": "--batch-rng",
    "forward": "--forward",
    "operand_lengths": "--operand-lengths",
    "random_positions": "--random-positions",
    "distractors": "--distractors",
    "end_token_loss": "--end-token-loss",
}


def _options(values: dict[str, Any], flags: dict[str, str]) -> list[str]:
    out = []
    for name, flag in flags.items():
        value = values[name]
        if value is None:
            if name in OFF_WHEN_NONE:
                out += [flag, OFF]
            continue
        if isinstance(value, bool):  # a switch: --flag / --no-flag
            out.append(flag if value else "--no-" + flag[2:])
            continue
        out += [flag, *(str(v) for v in value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
    return out


def train_command(task: Task, model_config: ModelConfig, train_config: TrainConfig, out_dir: str | Path) -> str | None:
    """The command that trains this setting into ``out_dir``; None when the model's vocabulary
    differs from the task's (the command line has no option for it)."""
    architecture = {k: v for k, v in model_config.to_dict().items() if k not in MODEL_FROM_TASK}
    if ModelConfig.for_task(task, **architecture) != model_config:
        return None
    args = ["train", *_options(task.to_dict(), TASK_FLAGS)]
    if not task.pad:
        args.append("--no-pad")
    if task.bos:
        args.append("--bos")
    args += _options(model_config.to_dict(), MODEL_FLAGS) + _options(train_config.to_dict(), TRAIN_FLAGS)
    return "mechinterp-arith " + shlex.join(args + ["--out", str(out_dir)])
