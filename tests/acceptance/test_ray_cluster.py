"""A real Ray cluster of two nodes on this machine (loopback only), as docs/sweeps.md's
multi-machine recipe builds one: a head (``ray start --head``) and a second node (``ray start
--address``), with token authentication (Ray 2.5x+ clusters require it: ``RAY_AUTH_MODE=token`` and
one token, here a fresh random one in ``RAY_AUTH_TOKEN``, for every node and the driver).

Checks: a sweep pointed at the cluster spreads its runs over both nodes (each record names its
node), a driver without the token is told that authentication is the cause, and ``--ray auto``
never joins another sweep's private instance. Both ``ray start`` processes are stopped by their
process group at the end (never ``ray stop``, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

BIN = Path(sys.executable).parent
SPEC = """
[settings]
task = "add"
digits = 1
n_layers = 1
n_heads = 2
d_model = 16
steps = 20
batch_size = 32
eval_every = 10
eval_n = 50
[grid]
positional = ["learned", "rotary", "nope", "randomized"]
[analyses]
equivalence = false
n = 50
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*argv: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    code = "import sys; from mechinterp_arith.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=timeout)


class Cluster:
    """``ray start --block`` processes (head, then nodes) in their own process groups."""

    def __init__(self, env: dict):
        self.env, self.port = env, free_port()
        self.temp = tempfile.mkdtemp(prefix="ma-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.procs: list[subprocess.Popen] = []

    def start(self, *argv: str) -> None:
        log = open(Path(self.temp) / f"start{len(self.procs)}.log", "w")
        self.procs.append(
            subprocess.Popen(
                [
                    str(BIN / "ray"),
                    "start",
                    "--block",
                    "--node-ip-address=127.0.0.1",
                    "--num-cpus=1",
                    f"--temp-dir={self.temp}",
                    "--disable-usage-stats",
                    *argv,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def node_ids(self, expected: int, timeout: float = 180) -> list[str]:
        probe = (
            "import json, time, ray\n"
            f"ray.init(address={self.address!r}, log_to_driver=False)\n"
            f"for _ in range({int(timeout)}):\n"
            "    alive = [n['NodeID'] for n in ray.nodes() if n['Alive']]\n"
            f"    if len(alive) >= {expected}: break\n"
            "    time.sleep(1)\n"
            "print(json.dumps(sorted(alive)))\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", probe], env=self.env, capture_output=True, text=True, timeout=timeout + 60
        )
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        for p in reversed(self.procs):
            with_group(p, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                with_group(p, signal.SIGKILL)
                p.wait()
        shutil.rmtree(self.temp, ignore_errors=True)


def with_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # the group we created for it: ray start and the processes it began
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster():
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),  # this cluster's own token; ~/.ray is never read or written
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("RAY_ADDRESS", None)
    c = Cluster(env)
    try:
        c.start("--head", f"--port={c.port}", "--include-dashboard=false")
        c.node_ids(1)
        c.start(f"--address={c.address}")
        ids = c.node_ids(2)
        assert len(ids) == 2
        yield c, ids
    finally:
        c.stop()


def test_a_sweep_on_a_two_node_cluster_runs_on_both_nodes(cluster, tmp_path):
    c, node_ids = cluster
    (tmp_path / "spec.toml").write_text(SPEC)
    out = tmp_path / "sweep"
    r = cli("sweep", str(tmp_path / "spec.toml"), "--out", str(out), "--ray", c.address, "--quiet", env=c.env)
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(f.read_text()) for f in sorted((out / "records").glob("*.json"))]
    assert len(records) == 4 and all(rec["status"] == "done" for rec in records)
    used = {rec["ray_node"] for rec in records}
    assert used == set(node_ids), (used, node_ids)  # both nodes got work, and each record says where
    assert "4 run now, 0 failed" in r.stdout


def test_without_the_token_the_cause_is_named_not_unreachable(cluster, tmp_path):
    c, _ = cluster
    (tmp_path / "spec.toml").write_text(SPEC)
    env = {k: v for k, v in c.env.items() if k not in ("RAY_AUTH_TOKEN",)} | {"RAY_AUTH_MODE": "disabled"}
    start = time.monotonic()
    r = cli(
        "sweep", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "s"), "--ray", c.address, env=env, timeout=300
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
    assert "refused this process: it requires token authentication" in r.stderr
    assert "set RAY_AUTH_MODE=token" in r.stderr and "cannot reach" not in r.stderr
    assert time.monotonic() - start < 240  # not Ray's endless retries (a bound for the test, not a benchmark)


PRIVATE = """
import json, sys, time
from mechinterp_arith.sweep.executors import connect
import ray
connect("auto", 1)
print(json.dumps(ray.get_runtime_context().gcs_address), flush=True)
sys.stdin.readline()  # hold the instance until told
"""


def test_auto_never_joins_another_sweeps_private_instance():
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    first = subprocess.Popen(
        [sys.executable, "-c", PRIVATE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        first_gcs = json.loads(first.stdout.readline())
        second = subprocess.run(
            [sys.executable, "-c", PRIVATE], env=env, input="\n", capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 0, second.stderr[-2000:]
        assert json.loads(second.stdout.splitlines()[0]) != first_gcs  # its own instance, not the first's
    finally:
        first.stdin.write("\n")
        first.stdin.flush()
        first.wait(120)
