"""Run a sweep: skip finished runs, hand the rest to an executor, record every outcome, keep results.csv.

>>> from mechinterp_arith.sweep import load_spec, run_sweep
>>> result = run_sweep(load_spec("analyses/sweeps/smoke.toml"), "out/smoke")        # doctest: +SKIP
>>> result.frame[["run_id", "status", "id_exact", "exact_len3"]]                     # doctest: +SKIP

Running the same spec into the same directory again is how a sweep is resumed: runs recorded
as done are skipped (their checkpoints are never touched), an interrupted run continues from its
training state, and runs that failed are tried again.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import shutil
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..core.files import atomic_write_text
from ..core.threads import resolve_threads
from .execute import SEEDS_TRAIN_TOGETHER, WorkUnit, new_record
from .executors import LocalExecutor, RayExecutor, new_token
from .results import DONE, FAILED, RUNS, SPEC, is_finished, read_record, write_record, write_results
from .settings import RunSettings
from .spec import SweepSpec

MAX_ATTEMPTS = 2  # a unit whose worker process died is tried once more
MAX_UNIT_RUNS = 64  # runs trained together in one unit: its directories are made when it starts, not all at once
LOCK = ".sweep.lock"


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the results table and how many runs it skipped, ran and saw fail."""

    sweep_dir: Path
    frame: pd.DataFrame
    skipped: int
    ran: int
    failed: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failed == 0


def plan_units(
    runs: Sequence[RunSettings], slots: int, together: bool = SEEDS_TRAIN_TOGETHER
) -> list[tuple[RunSettings, ...]]:
    """Work units: one per run while seeds train one by one; else each group's seeds together,
    a group split into as many units as it takes to give every slot work, and into units of at
    most :data:`MAX_UNIT_RUNS` runs (a unit makes its runs' directories when it starts)."""
    if not together:
        return [(run,) for run in runs]
    groups: dict[str, list[RunSettings]] = {}
    for run in runs:
        groups.setdefault(run.group_id, []).append(run)
    pieces = max(1, math.ceil(slots / max(1, len(groups))))
    units = []
    for members in groups.values():
        size = min(MAX_UNIT_RUNS, math.ceil(len(members) / min(pieces, len(members))))
        units += [tuple(members[i : i + size]) for i in range(0, len(members), size)]
    return units


def prepare_dir(out: Path) -> None:
    """Create the sweep directory, refusing a file or a non-empty directory that is not a sweep's."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; --out must be a directory")
    if out.is_dir() and any(out.iterdir()) and not ((out / SPEC).is_file() or (out / RUNS).is_dir()):
        raise ValueError(f"{out} is not empty and holds no sweep ({SPEC}); choose a new or a sweep directory")
    (out / RUNS).mkdir(parents=True, exist_ok=True)


def hold_lock(out: Path):
    """An exclusive lock on the sweep directory for this process's lifetime (one sweep per directory).
    The lock file is opened without following a symbolic link (a planted link is refused)."""
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"{out / LOCK} is a symbolic link, not the sweep's lock file; remove it") from None
        raise
    handle = os.fdopen(fd, "r+")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{out / LOCK} is not a regular file; remove it")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"another sweep is running in {out}; wait for it or stop it first") from None
    except BaseException:
        handle.close()
        raise
    return handle


def store_shipped(out: Path, payload: dict) -> None:
    """Write what a worker without access to the directory sent back: checkpoints, then records."""
    by_run: dict[str, dict[str, bytes]] = {}
    for rel, content in (payload.get("files") or {}).items():
        parts = Path(rel).parts
        by_run.setdefault(parts[1], {})[str(Path(*parts[2:]))] = content
    for run_id, files in by_run.items():
        incoming = out / RUNS / f".{run_id}.incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        for rel, content in files.items():
            (incoming / rel).parent.mkdir(parents=True, exist_ok=True)
            (incoming / rel).write_bytes(content)
        shutil.rmtree(out / RUNS / run_id, ignore_errors=True)
        os.replace(incoming, out / RUNS / run_id)
    for record in payload["records"]:
        write_record(out, record)


def headline(record: dict) -> str:
    """The last figure the progress bar shows: OOD exact at the first OOD length, else ID exact, else the error."""
    if record["status"] != DONE:
        return f"{record['run_id']} failed: {record['error']}"[:120]
    figures = record["figures"]
    ood = sorted((k for k in figures if k.startswith("exact_len")), key=lambda k: int(k[9:]))
    key = ood[0] if ood else "id_exact" if "id_exact" in figures else "train_id_exact"
    return f"{record['run_id']} {key} {figures.get(key, float('nan')):.3f}"


def make_executor(ray: str | None, workers: int | None, gpus_per_unit: float):
    if ray is None:
        if gpus_per_unit:
            raise ValueError("--gpus-per-unit needs --ray (the local pool shares the machine's devices)")
        return LocalExecutor(workers)
    return RayExecutor(ray, workers, gpus_per_unit)


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    ray: str | None = None,
    workers: int | None = None,
    gpus_per_unit: float = 0.0,
    device: str = "auto",
    progress: bool = True,
    command: str | None = None,
    threads: int | None = None,
) -> SweepResult:
    """Run every unfinished run of ``spec`` into ``out_dir``; returns the results (also in results.csv).

    ``ray``: None runs on this machine with ``workers`` processes (default: the cores); ``"auto"``
    or a cluster address runs Ray tasks. A run's failure is recorded and never stops the others.
    ``threads``: torch CPU threads of each worker (:func:`~mechinterp_arith.core.threads.resolve_threads`:
    default ``$MECHINTERP_ARITH_THREADS``, else 1).
    """
    start, out = time.perf_counter(), Path(out_dir)
    if ray is not None and not gpus_per_unit and device == "auto":
        device = "cpu"  # a Ray task that requested no GPU trains on the CPU, whatever its node has
    prepare_dir(out)
    lock = hold_lock(out)
    try:
        atomic_write_text(out / SPEC, spec.text)
        runs = list(spec.runs)
        records = {r.run_id: read_record(out, r.run_id) for r in runs}
        todo = [r for r in runs if not is_finished(out, r, spec.analyses)]
        skipped = len(runs) - len(todo)
        ran = failed = 0
        if todo:
            ran, failed = _dispatch(
                spec,
                out,
                todo,
                records,
                lambda: make_executor(ray, workers, gpus_per_unit),
                device,
                command,
                progress,
                skipped,
                resolve_threads(threads),
            )
        frame = write_results(out, runs, records)
        return SweepResult(out, frame, skipped, ran, failed, time.perf_counter() - start)
    finally:
        lock.close()


def _dispatch(
    spec, out: Path, todo, records: dict, new_executor, device, command, progress, skipped, threads: int
) -> tuple[int, int]:
    """Start the executor, submit the units, then collect their records as they finish; returns (runs
    done, runs failed). The progress bar counts runs (a unit may train several seeds) and shows at
    once what is happening, from starting the workers on."""
    token = new_token(out)
    bar = tqdm(
        total=len(spec.runs), initial=skipped, desc=f"sweep {spec.name}", unit="run", disable=None if progress else True
    )  # on a terminal only: a log or a pipe gets the summary line, not bar redraws
    bar.set_postfix_str(f"{skipped} already finished; starting the workers", refresh=True)
    try:
        executor = new_executor()
    except BaseException:
        bar.close()
        raise
    units = [
        WorkUnit(runs, str(out), spec.analyses, device, command, threads) for runs in plan_units(todo, executor.slots)
    ]
    counts = {DONE: 0, FAILED: 0}
    cancel = True
    try:
        pending = {executor.submit(u, token): (u, 1) for u in units}
        bar.set_postfix_str(
            f"{len(todo)} runs in {len(units)} units on {executor.slots} {executor.kind} slots", refresh=True
        )
        while pending:
            for handle in executor.wait(list(pending), timeout=1.0):
                unit, attempt = pending.pop(handle)
                try:
                    payload = executor.result(handle)
                except Exception as e:
                    if executor.recover(handle, e) and attempt < MAX_ATTEMPTS:
                        pending[executor.submit(unit, token)] = (unit, attempt + 1)
                        continue
                    lost = [{**new_record(run, e, sweep_dir=str(out)), "ray_node": None} for run in unit.runs]
                    payload = {"records": lost, "files": {}}  # where it died is unknown
                if payload["files"] is not None:
                    store_shipped(out, payload)
                for record in payload["records"]:
                    records[record["run_id"]] = record
                    counts[record["status"]] += 1
                    bar.set_postfix_str(headline(record), refresh=False)
                    bar.update(1)
                write_results(out, spec.runs, records)
            running = sum(len(pending[h][0].runs) for h in executor.running(list(pending)))
            bar.set_description(
                f"sweep {spec.name} [done {counts[DONE]} training {running} failed {counts[FAILED]}]", refresh=True
            )
        cancel = False
    finally:
        bar.close()
        executor.close(cancel=cancel)
    return counts[DONE] + counts[FAILED], counts[FAILED]
