"""One work unit of a sweep, as a worker runs it: train its runs, analyse each model, record each run.

A unit holds runs of one architecture that differ only in seed (one ``group_id``): a seed
ensemble, trained by :func:`~mechinterp_arith.core.ensemble.train_ensemble` as one batched
computation, each run in its own checkpoint directory. :data:`SEEDS_TRAIN_TOGETHER` is therefore
True: the runner keeps a group's seeds in one unit, split only to give every worker work.

Nothing a run raises leaves the unit: the error becomes the run's ``failed`` record and the
other runs go on.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..core.checkpoint import CheckpointError, load, read_config
from ..core.ensemble import train_ensemble
from ..core.threads import set_threads
from ..core.version import __version__
from .analyses import analyse_run
from .results import DONE, FAILED, RUNS, analyses_key, has_checkpoint, write_record
from .settings import RunSettings
from .spec import AnalysesSpec

SEEDS_TRAIN_TOGETHER = True  # a group's seeds train as one seed ensemble, one batched computation


@dataclass(frozen=True)
class WorkUnit:
    """Runs of one group, where to write them and what to measure (picklable: sent to workers)."""

    runs: tuple[RunSettings, ...]
    sweep_dir: str
    analyses: AnalysesSpec
    device: str = "auto"
    command: str | None = None  # recorded in each checkpoint's config.json
    threads: int = 1  # torch threads of the worker (core.threads; the sweep's --threads)


def trained(out: Path, run: RunSettings) -> bool:
    """Whether ``out`` holds this run's finished checkpoint, weights included (CheckpointError if it
    holds another's)."""
    if not has_checkpoint(out):
        return False
    config = read_config(out)
    training = {k: v for k, v in (config.get("training") or {}).items() if k != "device"}
    expected = {k: v for k, v in run.train_config().to_dict().items() if k != "device"}
    if config["task"] != run.task.to_dict() or config["model"] != run.model.to_dict() or training != expected:
        raise CheckpointError(f"{out} holds a checkpoint with other settings than run {run.run_id}")
    return True


def run_unit(unit: WorkUnit) -> list[dict]:
    """Train what is not trained yet, then analyse and record every run of the unit; returns the records."""
    set_threads(unit.threads)
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
        first = unit.runs[todo[0]]
        ensemble = train_ensemble(
            first.task,
            first.model,
            first.train_config(unit.device),
            [unit.runs[i].model.seed for i in todo],
            command=unit.command,
            progress=False,
            threads=unit.threads,
            # the sweep owns its run directories; one reaching here holds no finished checkpoint of
            # this run (`trained`), e.g. one whose weights were lost
            overwrite=True,
            seed_dirs=[dirs[i] for i in todo],
            keep_going=True,
        )
        seeds = {unit.runs[i].model.seed: i for i in todo}
        errors.update({seeds[s]: e for s, e in ensemble.errors.items()})
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
    Paths inside ``sweep_dir`` are written relative to it in the error, the same wherever the run ran."""
    record = {
        "run_id": run.run_id,
        "group": run.group_id,
        "status": FAILED if error else DONE,
        "settings": run.flat,
        "figures": {},
        "error": None,
        "seconds": round(seconds, 3),
        "host": platform.node(),
        "pid": os.getpid(),
        "ray_node": ray_node(),  # the Ray node it ran on (None outside Ray)
        "version": __version__,
    }
    if error is not None:
        message = f"{type(error).__name__}: {error}"
        record["error"] = message.replace(f"{Path(sweep_dir)}{os.sep}", "") if sweep_dir else message
        record["traceback"] = "".join(traceback.format_exception(error, limit=-4))
    return record


def ray_node() -> str | None:
    """The Ray node id of this process when it is a Ray worker, else None."""
    ray = sys.modules.get("ray")  # never imported here: a local sweep has no Ray
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


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
