"""How many CPU threads torch uses: one per process unless the user asks for more.

The toolkit's models are tiny: a matmul of a 3,840 x 48 activation by a 48 x 192 weight is too
small to split across cores with profit, and torch's default (one OpenMP thread per core) makes
threads spin-wait for each other whenever any other process needs a core: two trainings side by
side on 2 cores ran more than 10x slower than one (docs/training.md). Parallelism comes from
running models side by side (seed ensembles, sweeps, several processes), not from splitting one
tiny matmul.

The thread count is, in order: an explicit ``threads`` argument (CLI: ``--threads N`` on every
command), the environment variable ``MECHINTERP_ARITH_THREADS``, else 1. ``0`` keeps torch's own
default (one thread per core). At most :func:`max_threads` (the cores times
:data:`THREADS_PER_CORE`): OpenMP crashes the process on absurd counts (100,000 threads segfault,
50,000 abort in libgomp), so they are refused with one line instead.

Torch is imported only when threads are set, so the command line checks ``--threads`` at once.

>>> resolve_threads(4)
4
>>> import torch
>>> with thread_limit(1):
...     torch.get_num_threads()
1
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV_VAR = "MECHINTERP_ARITH_THREADS"
DEFAULT_THREADS = 1
THREADS_PER_CORE = 4  # more threads than this per core only slows a process down


def max_threads() -> int:
    """The largest thread count accepted: the machine's cores times :data:`THREADS_PER_CORE`."""
    return (os.cpu_count() or 1) * THREADS_PER_CORE


def _check(value: int, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{source} must be an integer >= 0 (0: torch's default), got {value!r}")
    if value > max_threads():
        raise ValueError(
            f"{source} must be at most {max_threads()} ({os.cpu_count() or 1} cores x {THREADS_PER_CORE}), "
            f"got {value:,}"
        )
    return value


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to use: ``threads`` if given, else ``$MECHINTERP_ARITH_THREADS``, else 1
    (0 means torch's default). ValueError naming the source of a bad value."""
    if threads is not None:
        return _check(threads, "threads")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be an integer >= 0 (0: torch's default), got {env!r}") from None
        return _check(value, ENV_VAR)
    return DEFAULT_THREADS


def set_threads(threads: int | None = None) -> int:
    """Apply :func:`resolve_threads` to torch for the rest of the process; returns the threads in use."""
    import torch

    n = resolve_threads(threads)
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


@contextlib.contextmanager
def thread_limit(threads: int | None = None) -> Iterator[int]:
    """Inside the block torch uses :func:`resolve_threads` threads; the previous count is restored after."""
    import torch

    before = torch.get_num_threads()
    try:
        yield set_threads(threads)
    finally:
        torch.set_num_threads(before)
