"""The Ray executor on a local Ray instance: the same results.csv figures as the local process pool.

Ray comes with the dev extra (``pip install -e ".[dev]"``); these tests skip, saying so, without it.
One Ray instance (2 CPUs, no dashboard) serves the module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

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
    node = ray.get_runtime_context().get_node_id()
    records = [json.loads(f.read_text()) for f in (tmp_path / "ray" / "records").glob("*.json")]
    assert len(records) == 5 and {r["ray_node"] for r in records} == {node}  # where each run ran
    assert {r["ray_node"] for r in local_records()} == {None}  # the local pool has no Ray node


def local_records() -> list[dict]:
    _, local = tiny_sweep()
    return [json.loads(f.read_text()) for f in (local.sweep_dir / "records").glob("*.json")]


@pytest.mark.parametrize(
    "ray_option, env, message",
    [
        ("127.0.0.1:1", {}, "cannot reach a Ray cluster at '127.0.0.1:1' (--ray 127.0.0.1:1): Connection refused"),
        (
            "auto",
            {"RAY_ADDRESS": "127.0.0.1:1"},
            "cannot reach a Ray cluster at '127.0.0.1:1' (RAY_ADDRESS): Connection refused",
        ),
    ],
)
def test_an_address_where_nothing_listens_fails_at_once_naming_it(ray_option, env, message, tmp_path):
    """Ray itself retries such an address for minutes; the sweep says so in one line, in seconds."""
    (tmp_path / "spec.toml").write_text("[settings]\ndigits = 1\nsteps = 2\n")
    code = "import sys; from mechinterp_arith.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["sweep", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "s"), "--ray", ray_option, "--quiet"]
    r = subprocess.run(
        [sys.executable, "-c", code, *argv], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and r.stderr.strip() == f"mechinterp-arith sweep: error: {message}", r.stderr


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
