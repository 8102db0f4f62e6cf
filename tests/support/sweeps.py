"""A tiny sweep, run once per test session and shared by the sweep, Ray, report and browser tests.

Five runs of 1-digit addition on a 1-layer, d_model 16 model (60 steps each): learned and rotary
positions x seeds 0 and 1, and one run whose learning rate makes it diverge (its loss becomes NaN,
so training stops before writing it): the sweep records that failure and goes on.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

TINY_SPEC = """
[sweep]
name = "tiny"
[settings]
task = "add"
digits = 1
n_layers = 1
n_heads = 2
d_model = 16
steps = 60
batch_size = 64
lr = 1e-2
warmup = 10
eval_every = 20
eval_n = 100
[[runs]]
positional = "learned"
seed = 0
[[runs]]
positional = "learned"
seed = 1
[[runs]]
positional = "rotary"
seed = 0
[[runs]]
positional = "rotary"
seed = 1
[[runs]]
positional = "learned"
seed = 0
lr = 1e6
[analyses]
n = 200
pca = true
"""
DIVERGENT_LR = 1e6
TIMING_COLUMNS = ("seconds", "train_seconds")


@functools.lru_cache(maxsize=1)
def tiny_sweep():
    """``(spec, SweepResult)`` of the tiny sweep, run with the local process pool (2 workers)."""
    from mechinterp_arith.sweep import parse_spec, run_sweep

    spec = parse_spec(TINY_SPEC, "tiny")
    root = Path(tempfile.mkdtemp(prefix="mechinterp-arith-sweep-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    out = root / "tiny"
    return spec, run_sweep(spec, out, workers=2, progress=False)


def figures(frame):
    """A results frame without its timing columns, indexed by run id (what equal seeds reproduce)."""
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame]).set_index("run_id").sort_index()
