"""One work unit of a sweep, as a worker runs it: train its runs, analyse each model, record each run.

A unit holds runs of one architecture that differ only in seed (one ``group_id``).
:func:`train_group` is the single place that trains them: as one seed ensemble, one batched
computation (the training loop of :mod:`~mechinterp_arith.core.train_loop`, each run in its own
checkpoint directory). :data:`SEEDS_TRAIN_TOGETHER` is therefore True: the runner keeps a group's
seeds in one unit, split only to give every worker work.

Nothing a run raises leaves the unit: the error becomes the run's ``failed`` record and the
other runs go on.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.checkpoint import CheckpointError, load, read_config
from ..core.locks import exclusive
from ..core.train_command import train_command
from ..core.train_loop import Member, prepare_data, run_members, start_member
from ..core.version import __version__
from .analyses import analyse_run
from .results import DONE, FAILED, RUNS, analyses_key, write_record
from .settings import RunSettings
from .spec import AnalysesSpec

SEEDS_TRAIN_TOGETHER = True  # train_group trains a group's seeds in one batched computation


@dataclass(frozen=True)
class WorkUnit:
    """Runs of one group, where to write them and what to measure (picklable: sent to workers)."""

    runs: tuple[RunSettings, ...]
    sweep_dir: str
    analyses: AnalysesSpec
    device: str = "auto"
    command: str | None = None  # recorded in each checkpoint's config.json
    threads: int = 1  # torch threads of the worker


def train_group(
    runs: list[RunSettings], out_dirs: list[Path], device: str = "auto", command: str | None = None
) -> list[BaseException | None]:
    """Train runs that differ only in seed, each into its checkpoint directory, as one seed ensemble
    (an interrupted run resumes from its training state; runs saved at different steps train in
    separate batches). Returns each run's error, or None when it trained."""
    errors: list[BaseException | None] = [None] * len(runs)
    with contextlib.ExitStack() as locks:
        members: dict[int, Member] = {}
        for i, (run, out) in enumerate(zip(runs, out_dirs)):
            try:
                locks.enter_context(exclusive(out))
                members[i] = start_member(run.task, run.model, run.train_config(device), out, True, command)
            except Exception as e:
                errors[i] = e
        by_step: dict[int, list[int]] = {}
        for i, m in members.items():
            by_step.setdefault(m.step, []).append(i)
        for batch in by_step.values():
            try:
                training, sets = prepare_data(members[batch[0]].task, members[batch[0]].cfg)
                run_members([members[i] for i in batch], training, sets, progress=False)
            except Exception as e:
                for i in batch:
                    errors[i] = e
    return errors


def trained(out: Path, run: RunSettings) -> bool:
    """Whether ``out`` holds this run's finished checkpoint (CheckpointError if it holds another's)."""
    if not (out / "config.json").is_file():
        return False
    config = read_config(out)
    training = {k: v for k, v in (config.get("training") or {}).items() if k != "device"}
    expected = {k: v for k, v in run.train_config().to_dict().items() if k != "device"}
    if config["task"] != run.task.to_dict() or config["model"] != run.model.to_dict() or training != expected:
        raise CheckpointError(f"{out} holds a checkpoint with other settings than run {run.run_id}")
    return True


def run_unit(unit: WorkUnit) -> list[dict]:
    """Train what is not trained yet, then analyse and record every run of the unit; returns the records."""
    torch.set_num_threads(unit.threads)
    dirs = [Path(unit.sweep_dir) / RUNS / run.run_id for run in unit.runs]
    start = time.perf_counter()
    errors: dict[int, BaseException] = {}
    todo = []
    for i, (run, out) in enumerate(zip(unit.runs, dirs)):
        try:
            if not trained(out, run):
                todo.append(i)
        except Exception as e:
            errors[i] = e
    if todo:
        trained_errors = train_group([unit.runs[i] for i in todo], [dirs[i] for i in todo], unit.device, unit.command)
        errors.update({i: e for i, e in zip(todo, trained_errors) if e is not None})
    records = []
    for i, (run, out) in enumerate(zip(unit.runs, dirs)):
        record = analysed_record(run, unit, out, errors.get(i), time.perf_counter() - start)
        write_record(unit.sweep_dir, record)
        records.append(record)
    return records


def new_record(
    run: RunSettings, error: BaseException | None = None, seconds: float = math.nan, sweep_dir: str | None = None
) -> dict:
    """A run's record: ``failed`` with ``error`` when one is given (the figures come later otherwise).
    Paths inside ``sweep_dir`` are written relative to it in the error, the same wherever the run ran.
    ``train_command``: the ``mechinterp-arith train`` line that trains the run alone (into
    ``runs/RUN_ID``); ``load_average``: the host's 1, 5 and 15-minute load when the record is written."""
    record = {
        "run_id": run.run_id,
        "group": run.group_id,
        "status": FAILED if error else DONE,
        "settings": run.flat,
        "figures": {},
        "error": None,
        "seconds": round(seconds, 3),
        "host": platform.node(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "train_command": train_command(run.task, run.model, run.train_config("cpu"), Path(RUNS) / run.run_id),
        "pid": os.getpid(),
        "version": __version__,
    }
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
        if sweep_dir:
            record["error"] = record["error"].replace(f"{Path(sweep_dir)}{os.sep}", "")
        record["traceback"] = "".join(traceback.format_exception(error, limit=-4))
    return record


def analysed_record(run: RunSettings, unit: WorkUnit, out: Path, error: BaseException | None, seconds: float) -> dict:
    """The record of a trained run with its figures, or of its failure (training or analysis)."""
    if error is None:
        try:
            figures = analyse_run(load(out, device=unit.device), unit.analyses)
        except Exception as e:
            error = e
    record = new_record(run, error, seconds, unit.sweep_dir)
    record["analyses"] = analyses_key(unit.analyses)
    if error is None:
        record["figures"] = figures
    return record
