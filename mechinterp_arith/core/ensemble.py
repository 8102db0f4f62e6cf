"""Seed ensembles: K models of one architecture trained in one process, as one batched computation.

Seed ``S`` sets both the model initialisation (``ModelConfig.seed``) and the batch order
(``TrainConfig.seed``); everything else is shared, the train/test split included. Each member ends
with the weights a separate run with those seeds would have (to float rounding; tested), and is
written as a normal checkpoint, ``OUT/seed_S``, whose ``config.json`` records the command that
trains that seed alone. ``OUT/ensemble.json`` holds every seed's history and a summary.

>>> from mechinterp_arith import Task, ModelConfig, TrainConfig
>>> task = Task("add", 3)
>>> ens = train_ensemble(task, ModelConfig.for_task(task), TrainConfig(target_accuracy=1.0),
...                      seeds=range(8), out_dir="runs/add3")                      # doctest: +SKIP
>>> ens.summary()[["seed", "step", "held_out_exact", "ood_exact"]]                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .files import atomic_write_text
from .locks import exclusive
from .model import ModelConfig
from .tasks import Task
from .threads import thread_limit
from .train_command import train_command
from .train_config import TrainConfig
from .train_loop import Callback, Member, TrainResult, prepare_data, run_members, start_member
from .train_state import holding_out_dir

ENSEMBLE_JSON = "ensemble.json"
SCORES = ("id_exact", "ood_exact", "held_out_exact")


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """Where seed ``seed`` of an ensemble in ``out_dir`` is written."""
    return Path(out_dir) / f"seed_{seed}"


def member_configs(model_config: ModelConfig, train_config: TrainConfig, seed: int) -> tuple[ModelConfig, TrainConfig]:
    """The model and training settings of seed ``seed``: its initialisation and its batch order."""
    return dataclasses.replace(model_config, seed=seed), dataclasses.replace(train_config, seed=seed)


def check_seeds(seeds: Iterable[object]) -> list[int]:
    """The seeds as a list; ValueError for none, a repeat, or a value that is not an int >= 0
    (any values are accepted and checked here: they come from users)."""
    given = list(seeds)
    if not given:
        raise ValueError("seeds must name at least one seed")
    bad = [s for s in given if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds are integers >= 0, got {bad[0]!r}")
    checked = [s for s in given if isinstance(s, int)]
    if len(set(checked)) != len(checked):
        raise ValueError(f"seeds must be distinct, got {checked}")
    return checked


@dataclass
class EnsembleResult:
    """The trained members of an ensemble, by seed."""

    results: dict[int, TrainResult]
    path: Path | None = None

    @property
    def seeds(self) -> list[int]:
        return list(self.results)

    @property
    def models(self) -> dict[int, torch.nn.Module]:
        return {s: r.model for s, r in self.results.items()}

    @property
    def histories(self) -> dict[int, pd.DataFrame]:
        return {s: r.history for s, r in self.results.items()}

    def summary(self) -> pd.DataFrame:
        """One row per seed: its last history row (step, loss, ID/OOD exact, held-out exact, seconds)."""
        rows = [{"seed": s, **r.history.iloc[-1].to_dict()} for s, r in self.results.items() if len(r.history)]
        return pd.DataFrame(rows)


@holding_out_dir  # one writer per ensemble directory (and each member's, below)
def train_ensemble(
    task: Task,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | Path | None = None,
    resume: bool = True,
    command: str | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    threads: int | None = None,
    overwrite: bool = False,
) -> EnsembleResult:
    """Train one model per seed (init and batch order; the rest of the configs shared) as one
    batched computation. With ``out_dir``: ``OUT/seed_S`` checkpoints (resumable while training;
    seeds already finished are loaded, not retrained) and ``OUT/ensemble.json``. ``command``: the
    ensemble's own command line, recorded in ensemble.json; each member records the command that
    trains it alone. ``callback(step, model, row)`` runs for every member at every evaluation.
    ``resume`` and ``overwrite`` apply to each member as in :func:`~mechinterp_arith.core.train.train`.
    """
    seeds = check_seeds(seeds)
    with thread_limit(threads), contextlib.ExitStack() as locks:
        if out_dir is not None:
            for s in seeds:
                locks.enter_context(exclusive(seed_dir(out_dir, s)))
        members = [_member(task, model_config, train_config, s, out_dir, resume, overwrite) for s in seeds]
        training, sets = prepare_data(task, members[0].cfg)
        desc = f"train {task.name} x{len(seeds)} seeds"
        run_members(members, training, sets, callback, progress, desc=desc, extra={"ensemble_seeds": seeds})
    result = EnsembleResult({s: m.result() for s, m in zip(seeds, members)}, Path(out_dir) if out_dir else None)
    if out_dir is not None:
        write_ensemble_json(Path(out_dir), task, model_config, train_config, members, command)
    return result


def _member(
    task: Task,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int,
    out_dir: str | Path | None,
    resume: bool,
    overwrite: bool,
) -> Member:
    mcfg, cfg = member_configs(model_config, train_config, seed)
    out = seed_dir(out_dir, seed) if out_dir is not None else None
    member = start_member(task, mcfg, cfg, out, resume, overwrite=overwrite)
    if out is not None:  # from the settings as recorded (the scheme's defaults resolved by start_member)
        member.command = train_command(task, mcfg, member.cfg, out)
    return member


def write_ensemble_json(
    out_dir: Path,
    task: Task,
    model_config: ModelConfig,
    train_config: TrainConfig,
    members: Sequence[Member],
    command: str | None,
) -> Path:
    """``OUT/ensemble.json``: the shared settings, each seed's path, command and history, and the
    best / median / worst of each final score."""
    finals = [m.history[-1] if m.history else {} for m in members]
    summary = {}
    for key in SCORES:
        values = [f[key] for f in finals if key in f]
        if values:
            summary[key] = {"best": max(values), "median": statistics.median(values), "worst": min(values)}
    doc = {
        "format_version": 1,
        "task": task.to_dict(),
        "model": {**model_config.to_dict(), "seed": None},
        "training": {**train_config.to_dict(), "seed": None},
        "seeds": [m.cfg.seed for m in members],
        "command": command,
        "summary": summary,
        "members": [
            {
                "seed": m.cfg.seed,
                "path": m.out.name if m.out else None,
                "command": m.command,
                "final": f,
                "history": m.history,
            }
            for m, f in zip(members, finals)
        ],
    }
    path = out_dir / ENSEMBLE_JSON
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path
