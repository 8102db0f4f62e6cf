"""The Ray executor on a local Ray instance: the same results.csv figures as the local process pool.

Ray comes with the dev extra (``pip install -e ".[dev]"``); these tests skip, saying so, without it.
One Ray instance (2 CPUs, no dashboard) serves the module.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from support.sweeps import figures, tiny_sweep

import mechinterp_arith as ma
from mechinterp_arith.sweep import run_sweep
from mechinterp_arith.sweep.execute import WorkUnit
from mechinterp_arith.sweep.executors import run_unit_on_node
from mechinterp_arith.sweep.runner import store_shipped

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def test_ray_sweep_gives_the_same_figures(ray_instance, tmp_path):
    spec, local = tiny_sweep()
    result = run_sweep(spec, tmp_path / "ray", ray="auto", progress=False)  # joins the running instance
    assert (result.ran, result.failed) == (5, 1)
    pd.testing.assert_frame_equal(figures(result.frame), figures(local.frame))
    assert ray.is_initialized()  # a cluster the sweep joined is left running


def test_worker_without_the_directory_sends_checkpoints_back(ray_instance, tmp_path):
    """A node that cannot see the sweep directory trains in scratch space and returns the files;
    the sweep's process writes them, and the run then counts as finished."""
    spec, local = tiny_sweep()
    run = spec.runs[0]
    out = tmp_path / "shipped"
    unit = WorkUnit((run,), str(out), spec.analyses, "cpu")
    payload = ray.get(ray.remote(run_unit_on_node).options(num_cpus=1).remote(unit, None))  # no token: not shared
    assert not out.exists()
    assert sorted(payload["files"]) == [
        f"runs/{run.run_id}/{f}" for f in ("config.json", "metrics.json", "model.safetensors")
    ]
    store_shipped(out, payload)
    (record,) = payload["records"]
    expected = figures(local.frame).loc[run.run_id]
    compared = [k for k in record["figures"] if k in expected.index]
    assert len(compared) > 10 and all(expected[k] == record["figures"][k] for k in compared)
    again = run_sweep(dataclasses.replace(spec, runs=spec.runs[:1]), out, workers=1, progress=False)
    assert (again.skipped, again.ran) == (1, 0)
    shipped, reference = (ma.load(d / "runs" / run.run_id, device="cpu") for d in (out, local.sweep_dir))
    assert [row["loss"] for row in shipped.history] == [row["loss"] for row in reference.history]
