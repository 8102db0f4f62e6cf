"""Where work units run: a process pool on this machine (the default), or a Ray cluster.

Both executors call :func:`run_unit_on_node` on each unit and hand back the same payload, so a
sweep writes the same directory whichever ran it. Workers use one torch thread each (one unit
per core, no oversubscription).

* :class:`LocalExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with spawned workers, sized to
  the cores; each worker exits by itself when the sweep's process dies (a watchdog thread).
* :class:`RayExecutor`: Ray core tasks with ``num_cpus=1`` (and ``num_gpus`` when asked). ``auto``
  joins a running cluster when one is reachable and otherwise starts a local instance; an
  address joins that cluster. A worker that sees the sweep directory (same machine or a shared
  file system) writes into it directly; one that does not trains in a scratch directory and sends
  the finished checkpoints back, and the sweep's process writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
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

    def running(self, handles: list) -> int:
        return min(self.slots, sum(h.running() for h in handles))  # the pool queues one unit ahead

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

    def running(self, handles: list) -> int:
        return min(len(handles), self.slots)

    def result(self, handle) -> dict:
        return self._ray.get(handle)

    def recover(self, handle, error: BaseException) -> bool:
        return False  # Ray already retried a task whose worker died

    def close(self, cancel: bool = False) -> None:
        if self._started:
            self._ray.shutdown()


def connect(address: str = "auto", workers: int | None = None) -> bool:
    """Join a Ray cluster (``auto``: the running one if any, else a new local instance with ``workers``
    CPUs); returns True when this call started or joined it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": dict(SINGLE_THREAD_ENV)}
    if address == "auto":
        try:
            ray.init(address="auto", runtime_env=runtime_env, log_to_driver=False)
        except ConnectionError:
            ray.init(
                num_cpus=workers or os.cpu_count(),
                include_dashboard=False,
                runtime_env=runtime_env,
                log_to_driver=False,
            )
    else:
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        except ConnectionError as e:
            raise ValueError(f"cannot reach a Ray cluster at {address!r}: {e}") from None
    return True
