"""A sweep directory: its layout, the record of each run, and ``results.csv``.

::

    DIR/spec.toml               the spec last run here (as written)
    DIR/runs/<run_id>/          a normal checkpoint directory (``mechinterp_arith.load`` reads it);
                                while a run trains it holds its resumable training state instead
    DIR/records/<run_id>.json   what happened to the run: status (done / failed), settings, figures, error
    DIR/results.csv             one row per run of the spec: run_id, group, status, settings, figures, error

Every file is written atomically, so a sweep killed at any moment leaves each file whole.

>>> frame = load_sweep("out/smoke")                 # doctest: +SKIP
>>> frame.groupby("positional")["exact_len3"].mean()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..core.checkpoint import read_history
from ..core.files import atomic_write_text
from .settings import RunSettings

RESULTS, SPEC, RUNS, RECORDS = "results.csv", "spec.toml", "runs", "records"
DONE, FAILED, PENDING = "done", "failed", "pending"
LEAD_COLUMNS = ["run_id", "group", "status"]  # every results.csv starts with these (load_sweep checks them)


def run_dir(sweep_dir: str | Path, run: RunSettings) -> Path:
    return Path(sweep_dir) / RUNS / run.run_id


def record_path(sweep_dir: str | Path, run_id: str) -> Path:
    return Path(sweep_dir) / RECORDS / f"{run_id}.json"


def write_record(sweep_dir: str | Path, record: dict) -> None:
    """Save one run's record (atomically)."""
    path = record_path(sweep_dir, record["run_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=True) + "\n")


def read_record(sweep_dir: str | Path, run_id: str) -> dict | None:
    """The record of a run, or None when there is none or it is unreadable or malformed (not a JSON
    object with a known status, a figures object and an error string or null): the run is redone."""
    path = record_path(sweep_dir, run_id)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None  # unreadable: the run is redone
    if not (
        isinstance(record, dict)
        and record.get("status") in (DONE, FAILED)
        and isinstance(record.get("figures", {}), dict)
        and isinstance(record.get("error"), (str, type(None)))
    ):
        return None  # malformed (a list, figures that are not an object, ...): the run is redone
    return record


def analyses_key(analyses) -> dict:
    """The analyses settings as a record stores them (JSON types)."""
    return json.loads(json.dumps(dataclasses.asdict(analyses)))


def has_checkpoint(out: Path) -> bool:
    """Whether ``out`` still holds what a finished run leaves: ``config.json`` and ``model.safetensors``
    as regular files (a run whose weights were lost is trained again)."""
    return all((out / name).is_file() for name in ("config.json", "model.safetensors"))


def is_finished(sweep_dir: str | Path, run: RunSettings, analyses=None) -> bool:
    """A run recorded as done whose checkpoint is still there, weights included (and, when
    ``analyses`` is given, whose figures come from those analyses): it is never run again. A
    finished run whose spec now asks for other analyses is analysed again, not trained again."""
    record = read_record(sweep_dir, run.run_id)
    if record is None or record.get("status") != DONE or not has_checkpoint(run_dir(sweep_dir, run)):
        return False
    return analyses is None or record.get("analyses") == analyses_key(analyses)


def results_frame(sweep_dir: str | Path, runs: Sequence[RunSettings], records: dict | None = None) -> pd.DataFrame:
    """One row per run (spec order): id, group, status, every setting, then every figure and the error.
    ``records``: run id -> record already read (else read from the directory)."""
    rows = []
    for run in runs:
        record = (records or {}).get(run.run_id) or read_record(sweep_dir, run.run_id) or {"status": PENDING}
        row = {"run_id": run.run_id, "group": run.group_id, "status": record["status"], **run.flat}
        row["betas"] = json.dumps(list(run.flat["betas"]))
        row.update(record.get("figures") or {})
        row["error"] = record.get("error")
        row["seconds"] = record.get("seconds")
        rows.append(row)
    return pd.DataFrame(rows)


def write_results(sweep_dir: str | Path, runs: Sequence[RunSettings], records: dict | None = None) -> pd.DataFrame:
    """Rewrite ``DIR/results.csv`` (atomically) and return it."""
    frame = results_frame(sweep_dir, runs, records)
    atomic_write_text(Path(sweep_dir) / RESULTS, frame.to_csv(index=False))
    return frame


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory (it holds results.csv and runs/)."""
    path = Path(path)
    return (path / RESULTS).is_file() and (path / RUNS).is_dir()


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """``DIR/results.csv`` as a DataFrame: one row per run, its settings and measured figures.

    Figure columns: ``train_*`` (the last training evaluation), ``id_exact`` and ``exact_len<m>``
    (evaluate), ``equiv_*`` (equivalence), ``pca_*`` (PCA); ``<analysis>_note`` says why an
    analysis does not apply to a run.
    """
    path = Path(sweep_dir)
    if not (path / RESULTS).is_file():
        raise FileNotFoundError(
            f"{path} is not a sweep directory (no {RESULTS}); run `mechinterp-arith sweep SPEC --out {path}` first"
        )
    try:
        frame = pd.read_csv(path / RESULTS)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ValueError(f"{path / RESULTS} is not a readable results table ({' '.join(str(e).split())})") from None
    missing = [c for c in LEAD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path / RESULTS} is not a sweep's results table (no {', '.join(missing)} column); "
            f"rerun `mechinterp-arith sweep SPEC --out {path}` to rewrite it"
        )
    return frame


def run_history(sweep_dir: str | Path, run_id: str) -> pd.DataFrame:
    """The training history (``metrics.json``, checked against its schema) of a finished run: step,
    loss, id_exact, ood_exact...; empty when the run wrote none yet. CheckpointError for a malformed file."""
    return pd.DataFrame(read_history(Path(sweep_dir) / RUNS / run_id))
