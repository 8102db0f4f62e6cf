"""Seed ensembles: K models of one architecture trained in one process, as one batched computation:
the one way to train K models (``train --seeds K`` on the command line, a sweep's seed groups).

Seed ``S`` sets both the model initialisation (``ModelConfig.seed``) and the batch order
(``TrainConfig.seed``); everything else is shared, the train/test split included. Each run ends
with the weights a separate run with those seeds would have (to float rounding; tested), and is
written as a normal checkpoint, ``OUT/seed_S``, whose ``config.json`` records the command that
trains that seed alone. ``OUT/ensemble.json`` holds every seed's history and a summary. (A sweep
writes its seeds to their own directories, ``seed_dirs``, and records a seed that fails instead of
raising, ``keep_going``.)

``OUT`` follows the ownership rules of a single run's directory (:func:`prepare_ensemble_dir`):
an ensemble of these settings is resumed, anything else that is ours (a single-model checkpoint,
another ensemble, a partial one) is replaced only with ``overwrite`` and then atomically, and a
folder of other things is never touched.

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
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .checkpoint import OWN_FILES, CheckpointError, read_json, recover_dir
from .dirswap import replace_dir, staging_dir
from .files import atomic_write_text, strict_json
from .locks import exclusive, output_path
from .model import ModelConfig
from .tasks import Task
from .threads import thread_limit
from .train_command import train_command
from .train_config import TrainConfig
from .train_loop import Callback, TrainingRun, TrainResult, prepare_data, start_run, train_runs
from .train_state import with_out_dir_lock

ENSEMBLE_JSON = "ensemble.json"
SEED_DIR = re.compile(r"seed_\d+")
MAX_SEEDS = 256  # 100,000 seeds ran out of file descriptors (one lock file each)
SCORES = ("id_exact", "ood_exact", "held_out_exact")


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """Where seed ``seed`` of an ensemble in ``out_dir`` is written."""
    return Path(out_dir) / f"seed_{seed}"


def seed_configs(model_config: ModelConfig, train_config: TrainConfig, seed: int) -> tuple[ModelConfig, TrainConfig]:
    """The model and training settings of seed ``seed``: its initialisation and its batch order."""
    return dataclasses.replace(model_config, seed=seed), dataclasses.replace(train_config, seed=seed)


def check_seeds(seeds: Iterable[object]) -> list[int]:
    """The seeds as a list; ValueError for none, more than :data:`MAX_SEEDS`, a repeat, or a value
    that is not an int >= 0 (any values are accepted and checked here: they come from users)."""
    given = list(seeds)
    if not given:
        raise ValueError("seeds must name at least one seed")
    if len(given) > MAX_SEEDS:
        raise ValueError(
            f"at most {MAX_SEEDS} seeds train together (each holds a model, its optimizer and an open lock "
            f"file), got {len(given):,}; train larger ensembles in parts (a sweep splits them for you)"
        )
    bad = [s for s in given if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds are integers >= 0, got {bad[0]!r}")
    checked = [s for s in given if isinstance(s, int)]
    if len(set(checked)) != len(checked):
        raise ValueError(f"seeds must be distinct, got {checked}")
    return checked


@dataclass
class EnsembleResult:
    """The trained runs of an ensemble, by seed (and, with ``keep_going``, the error of each seed
    that did not train)."""

    results: dict[int, TrainResult]
    path: Path | None = None
    errors: dict[int, BaseException] = field(default_factory=dict)

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


@with_out_dir_lock  # one writer per ensemble directory (and each run's, below)
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
    *,
    seed_dirs: Sequence[str | Path] | None = None,
    keep_going: bool = False,
) -> EnsembleResult:
    """Train one model per seed (init and batch order; the rest of the configs shared) as one
    batched computation. With ``out_dir``: ``OUT/seed_S`` checkpoints (resumable while training;
    seeds already finished are loaded, not retrained) and ``OUT/ensemble.json``. ``command``: the
    ensemble's own command line, recorded in ensemble.json; each run records the command that
    trains it alone. ``callback(step, model, row)`` runs for every seed at every evaluation.
    ``resume`` and ``overwrite`` apply to each run as in :func:`~mechinterp_arith.core.train.train`;
    seeds resumed at different steps train in separate batches.

    ``seed_dirs`` (instead of ``out_dir``): one checkpoint directory per seed, in the order of
    ``seeds`` (a sweep's ``runs/<run id>``); no ensemble.json, and each records ``command``.
    ``keep_going``: a seed whose directory is refused or whose training fails is recorded in
    ``EnsembleResult.errors`` and the others go on, instead of raising.
    """
    seeds = check_seeds(seeds)
    if seed_dirs is not None:
        if out_dir is not None:
            raise ValueError("give out_dir (OUT/seed_S) or seed_dirs (one directory per seed), not both")
        if len(seed_dirs) != len(seeds):
            raise ValueError(f"seed_dirs names {len(seed_dirs)} directories for {len(seeds)} seeds")
    errors: dict[int, BaseException] = {}
    with thread_limit(threads), contextlib.ExitStack() as locks:
        if seed_dirs is not None:
            dirs: dict[int, Path | None] = dict(zip(seeds, map(output_path, seed_dirs)))
        elif out_dir is not None:
            out_dir = output_path(out_dir)  # links resolved
            prepare_ensemble_dir(out_dir, ensemble_settings(task, model_config, train_config), overwrite)
            dirs = {s: seed_dir(out_dir, s) for s in seeds}
        else:
            dirs = dict.fromkeys(seeds)
        runs: dict[int, TrainingRun] = {}
        for s in seeds:
            try:
                run_dir = dirs[s]
                if run_dir is not None:
                    locks.enter_context(exclusive(run_dir))
                runs[s] = _seed_run(task, model_config, train_config, s, dirs[s], resume, overwrite)
            except Exception as e:
                if not keep_going:
                    raise
                errors[s] = e
            else:
                if seed_dirs is not None:
                    runs[s].command = command
        by_step: dict[int, list[int]] = {}
        for s, m in runs.items():
            by_step.setdefault(m.step, []).append(s)
        desc = f"train {task.name} x{len(seeds)} seeds"
        extra = {"ensemble_seeds": seeds} if seed_dirs is None else None
        for batch in by_step.values():
            try:
                training, sets = prepare_data(task, runs[batch[0]].cfg)
                train_runs([runs[s] for s in batch], training, sets, callback, progress, desc=desc, extra=extra)
            except Exception as e:
                if not keep_going:
                    raise
                errors.update({s: e for s in batch})
    trained = {s: m for s, m in runs.items() if s not in errors}
    result = EnsembleResult(
        {s: m.result() for s, m in trained.items()}, Path(out_dir) if out_dir is not None else None, errors
    )
    if out_dir is not None:
        write_ensemble_json(Path(out_dir), task, model_config, train_config, list(trained.values()), command)
    return result


def _seed_run(
    task: Task,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seed: int,
    out: Path | None,
    resume: bool,
    overwrite: bool,
) -> TrainingRun:
    mcfg, cfg = seed_configs(model_config, train_config, seed)
    run = start_run(task, mcfg, cfg, out, resume, overwrite=overwrite)
    if out is not None:  # from the settings as recorded (the scheme's defaults resolved by start_run)
        run.command = train_command(task, mcfg, run.cfg, out)
    return run


def ensemble_settings(task: Task, model_config: ModelConfig, train_config: TrainConfig) -> dict[str, Any]:
    """What ``ensemble.json`` records of the settings shared by its seeds (seeds left out)."""
    return {
        "task": task.to_dict(),
        "model": {**model_config.to_dict(), "seed": None},
        "training": {**train_config.to_dict(), "seed": None},
    }


def prepare_ensemble_dir(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Make the ensemble directory ``out`` ready (hold its lock). Kept as it is: nothing, an ensemble
    of these ``settings``, or seed folders of an interrupted one (each seed's run then resumes, is kept
    when finished, or refuses other settings). Replaced only with ``overwrite``, atomically (the old
    contents or none, never a mix): a single-model checkpoint or training run, an ensemble of other
    settings; with ``overwrite`` an ensemble of these settings starts over too. Anything else is
    refused (CheckpointError naming it)."""
    recover_dir(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise CheckpointError(f"{out} is a file; an ensemble is a directory: choose another output")
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    seeds = {n for n in names if SEED_DIR.fullmatch(n)}
    foreign = sorted(names - seeds - OWN_FILES - {ENSEMBLE_JSON})
    if foreign:
        raise CheckpointError(
            f"{out} holds {foreign[0]!r}, which is not part of an ensemble; refusing to replace it: "
            f"choose a new or empty directory"
        )
    if not names:
        return
    if names & OWN_FILES:
        what = "a single-model checkpoint or training run (--seeds writes seed_S/ and ensemble.json)"
    elif ENSEMBLE_JSON in names:
        recorded = _recorded_settings(out / ENSEMBLE_JSON)
        if recorded == json.loads(strict_json(settings)) and not overwrite:
            return  # this ensemble: its members resume, or are kept when finished
        what = "the ensemble of other settings" if recorded is not None else "an unreadable ensemble.json"
    elif not overwrite:
        return  # an interrupted ensemble: each member resumes (or refuses other settings)
    else:
        what = "an interrupted ensemble"
    if not overwrite:
        raise CheckpointError(
            f"{out} holds {what}; pass overwrite=True (CLI: --overwrite) to replace it, or choose another output"
        )
    replace_dir(staging_dir(out), out)  # atomically empty: the old contents or nothing, never a mix


def _recorded_settings(file: Path) -> dict[str, Any] | None:
    try:
        doc = read_json(file)
        return {key: doc[key] for key in ("task", "model", "training")}
    except (CheckpointError, KeyError, TypeError):
        return None


def write_ensemble_json(
    out_dir: Path,
    task: Task,
    model_config: ModelConfig,
    train_config: TrainConfig,
    runs: Sequence[TrainingRun],
    command: str | None,
) -> Path:
    """``OUT/ensemble.json``: the shared settings, each seed's path, command and history, and the
    best / median / worst of each final score."""
    finals = [m.history[-1] if m.history else {} for m in runs]
    summary = {}
    for key in SCORES:
        values = [f[key] for f in finals if key in f]
        if values:
            summary[key] = {"best": max(values), "median": statistics.median(values), "worst": min(values)}
    doc = {
        "format_version": 1,
        **ensemble_settings(task, model_config, train_config),
        "seeds": [m.cfg.seed for m in runs],
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
            for m, f in zip(runs, finals)
        ],
    }
    path = out_dir / ENSEMBLE_JSON
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path
