"""Sweeps: a grid of training runs and their analyses, on this machine or on a Ray cluster.

>>> from mechinterp_arith.sweep import load_spec, run_sweep, load_sweep
>>> spec = load_spec("analyses/sweeps/smoke.toml")     # a TOML grid/list of runs  # doctest: +SKIP
>>> result = run_sweep(spec, "out/smoke")               # doctest: +SKIP
>>> load_sweep("out/smoke")                             # DIR/results.csv as a DataFrame  # doctest: +SKIP

Modules: ``settings`` (the flat setting keys of a run, its id), ``spec`` (the TOML spec),
``execute`` (one work unit in a worker: its seed group trained by ``train_ensemble``, analyses, records), ``analyses`` (the
figures of a finished model), ``executors`` (process pool, Ray), ``runner`` (``run_sweep``),
``results`` (the directory layout, records, results.csv, ``load_sweep``).
"""

from .results import is_sweep_dir, load_sweep, run_history
from .runner import SweepResult, run_sweep
from .settings import RunSettings, SettingsError, resolve
from .spec import AnalysesSpec, SpecError, SweepSpec, load_spec, parse_spec

__all__ = [
    "AnalysesSpec",
    "RunSettings",
    "SettingsError",
    "SpecError",
    "SweepResult",
    "SweepSpec",
    "is_sweep_dir",
    "load_spec",
    "load_sweep",
    "parse_spec",
    "resolve",
    "run_history",
    "run_sweep",
]
