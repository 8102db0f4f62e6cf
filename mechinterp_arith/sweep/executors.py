"""Where work units run: a process pool on this machine (the default), or a Ray cluster.

Both executors call :func:`run_unit_on_node` on each unit and hand back the same payload, so a
sweep writes the same directory whichever ran it. Workers use one torch thread each (one unit
per core, no oversubscription).

* :class:`LocalExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with spawned workers, sized to
  the cores; each worker exits by itself when the sweep's process dies (a watchdog thread).
* :class:`RayExecutor`: Ray core tasks with ``num_cpus=1`` (and ``num_gpus`` when asked). ``auto``
  joins the cluster that ``RAY_ADDRESS`` names or that ``ray start`` recorded on this machine, and
  otherwise starts a private local instance (never another sweep's private instance, which ends
  with that sweep); an address joins that cluster. A worker that sees the sweep directory (same
  machine or a shared file system) writes into it directly; one that does not trains in a
  scratch directory and sends the finished checkpoints back, and the sweep's process writes them.
  Each run's record holds the Ray node it ran on (``ray_node``).

Joining is checked first (:func:`connect`): an address where nothing listens is "cannot reach"
within seconds (Ray itself retries for minutes), and a cluster that refuses this process for want
of its authentication token (token authentication is on by default since Ray 2.5x; docs/sweeps.md)
is named as such.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from .execute import WorkUnit, run_unit
from .results import RUNS

TOKEN_FILE = ".sweep-token"  # a worker that reads the driver's token here shares the sweep directory
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_unit_on_node(unit: WorkUnit, token: str | None) -> dict:
    """Run a unit where it lands: ``{"records": [...], "files": None}`` when this node sees the sweep
    directory, else ``{"records", "files": {relative path: bytes}}`` of the finished checkpoints."""
    marker = Path(unit.sweep_dir) / TOKEN_FILE
    if token is not None and marker.is_file() and marker.read_text() == token:
        return {"records": run_unit(unit), "files": None}
    with tempfile.TemporaryDirectory(prefix="mechinterp-arith-sweep-") as scratch:
        records = run_unit(dataclasses.replace(unit, sweep_dir=scratch))
        root = Path(scratch)
        files = {str(p.relative_to(root)): p.read_bytes() for p in (root / RUNS).rglob("*") if p.is_file()}
    return {"records": records, "files": files}


def new_token(sweep_dir: Path) -> str:
    """Write a fresh token to the sweep directory (what :func:`run_unit_on_node` checks)."""
    token = secrets.token_hex(8)
    (sweep_dir / TOKEN_FILE).write_text(token)
    return token


@contextlib.contextmanager
def single_threaded_children():
    """``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1`` in the environment that spawned workers inherit."""
    before = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _exit_with_parent(parent_pid: int) -> None:
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="exit-with-sweep").start()


class LocalExecutor:
    """A pool of ``workers`` spawned processes (default: the cores), one torch thread each."""

    kind = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.slots = workers or os.cpu_count() or 1
        self._env = single_threaded_children()
        self._env.__enter__()
        self._pool = self._new_pool()
        self._pool_of: dict = {}  # future -> the pool that ran it

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.slots, mp_context=get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
        )

    def submit(self, unit: WorkUnit, token: str | None):
        future = self._pool.submit(run_unit_on_node, unit, token)
        self._pool_of[future] = self._pool
        return future

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def running(self, handles: list) -> list:
        """The handles whose units are running now (the pool also marks one queued unit running)."""
        return [h for h in handles if h.running()][: self.slots]

    def result(self, handle) -> dict:
        return handle.result()

    def recover(self, handle, error: BaseException) -> bool:
        """After a worker died (killed, out of memory) the pool is broken: start a fresh one (once per
        broken pool); True when the handle's unit may be submitted again."""
        if not isinstance(error, BrokenProcessPool):
            return False
        if self._pool_of.pop(handle, None) is self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return True

    def close(self, cancel: bool = False) -> None:
        if cancel:  # stop the units running now rather than wait for them (the pool has no public way)
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._env.__exit__(None, None, None)


class RayExecutor:
    """Ray core tasks, ``num_cpus=1`` each (plus ``gpus_per_unit``); ``address``: ``auto`` or a cluster's."""

    kind = "ray"

    def __init__(self, address: str = "auto", workers: int | None = None, gpus_per_unit: float = 0.0) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError('--ray needs Ray: pip install "mechinterp-arith[ray]"') from None
        self._ray = ray
        self._started = connect(address, workers)
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(run_unit_on_node).options(num_cpus=1, num_gpus=gpus_per_unit, max_retries=1)

    def submit(self, unit: WorkUnit, token: str | None):
        return self._task.remote(unit, token)

    def wait(self, handles: list, timeout: float) -> list:
        ready, _ = self._ray.wait(handles, num_returns=len(handles), timeout=timeout, fetch_local=False)
        return ready

    def running(self, handles: list) -> list:
        """The handles presumed running: as many as the cluster has slots, in submission order."""
        return handles[: self.slots]

    def result(self, handle) -> dict:
        return self._ray.get(handle)

    def recover(self, handle, error: BaseException) -> bool:
        return False  # Ray already retried a task whose worker died

    def close(self, cancel: bool = False) -> None:
        if self._started:
            self._ray.shutdown()


REACH_TIMEOUT_S = 5.0  # an address where nothing answers within this is "cannot reach"


def connect(address: str = "auto", workers: int | None = None) -> bool:
    """Join a Ray cluster, or start a private local instance; returns True when this call started or
    joined it (and so should shut it down). ``auto``: the cluster ``RAY_ADDRESS`` names (ValueError
    when it cannot be reached), else the one ``ray start`` recorded on this machine when it answers,
    else a new local instance with ``workers`` CPUs (Ray's own ``address="auto"`` would also join
    any Ray instance running here, e.g. another sweep's private one, which ends with that sweep).
    ValueError names the cause when joining fails: nothing reachable, or authentication."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": dict(SINGLE_THREAD_ENV)}
    source = f"--ray {address}"
    if address == "auto":
        found, source = _auto_address()
        if found is None:
            ray.init(
                address="local",
                num_cpus=workers or os.cpu_count(),
                include_dashboard=False,
                runtime_env=runtime_env,
                log_to_driver=False,
            )
            return True
        address = found
    problem = unreachable(address)
    if problem:
        raise ValueError(f"cannot reach a Ray cluster at {address!r} ({source}): {problem}")
    try:
        with stderr_silenced():  # Ray's C++ client logs each failed retry there; the one line is ours
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
        raise ValueError(_join_failure(address, source, e)) from None
    return True


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 (Python's and native code's stderr) goes to /dev/null inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _auto_address() -> tuple[str | None, str]:
    """The cluster ``--ray auto`` joins, and where that came from; ``(None, ...)``: start a local one."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env, "RAY_ADDRESS"
    try:  # what the last `ray start` on this machine recorded (Ray's own lookup of it)
        from ray._private.services import find_bootstrap_address

        recorded = find_bootstrap_address(None)
    except (ImportError, AttributeError, OSError):
        recorded = None
    if recorded and not unreachable(recorded):
        return recorded, "the cluster `ray start` recorded on this machine"
    return None, "a new local instance"


def unreachable(address: str) -> str | None:
    """Why nothing answers at a Ray address (``host:port`` or ``ray://host:port``), or None when a
    TCP connection opens within :data:`REACH_TIMEOUT_S`."""
    import socket

    host_port = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return "not an address of the form HOST:PORT or ray://HOST:PORT"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None


def _join_failure(address: str, source: str, error: BaseException) -> str:
    """The one line for a cluster that answers but could not be joined: authentication when Ray's
    errors (the chain under its generic "Failed to connect") say the token was refused."""
    chain: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < 8:
        chain.append(" ".join(str(seen).split()))
        seen = seen.__cause__ or seen.__context__
    if any("authtoken" in text.lower() or "authentication" in text.lower() for text in chain):
        mode = os.environ.get("RAY_AUTH_MODE")
        if mode != "token":
            fix = "set RAY_AUTH_MODE=token and give this process the cluster's token"
        else:
            fix = "this process's token is not the cluster's: give it the head's token"
        return (
            f"the Ray cluster at {address!r} ({source}) refused this process: it requires token "
            f"authentication (Ray 2.5x+); {fix} (RAY_AUTH_TOKEN, or the file RAY_AUTH_TOKEN_PATH or "
            f"~/.ray/auth_token names; see docs/sweeps.md)"
        )
    return f"could not join the Ray cluster at {address!r} ({source}): {chain[0][:300]}"
