"""Simulated process death at the Nth filesystem call (no strace needed).

``with DieAt(n): ...`` counts the calls that change files (rename, replace, exchange, link, copy,
unlink, rmdir, rmtree, mkdir, mkstemp, mkdtemp, safetensors writes, text writes). At call ``n``
the process "dies": that call does not happen (a write leaves half of its bytes), and every later
call raises too, so no cleanup handler can touch the disk, as after SIGKILL. The exception is
:class:`Killed`, a BaseException. ``DieAt(None)`` only counts. Locks held by the dead "process"
are released when the block exits, as the kernel would.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import mechinterp_arith.core.checkpoint as checkpoint
import mechinterp_arith.core.dirswap as dirswap
import mechinterp_arith.core.files as files
import mechinterp_arith.core.locks as locks


class Killed(BaseException):
    """The simulated death of the process."""


_PLAIN = [
    (os, "rename"),
    (os, "replace"),
    (os, "link"),
    (os, "unlink"),
    (os, "rmdir"),
    (os, "mkdir"),
    (shutil, "rmtree"),
    (shutil, "copy2"),
    (tempfile, "mkstemp"),
    (tempfile, "mkdtemp"),
    (dirswap, "exchange"),
]
_TENSOR_WRITES = [(files, "save_file"), (checkpoint, "save_file")]


class DieAt:
    def __init__(self, n: int | None):
        self.n, self.calls, self.dead, self.log = n, 0, False, []
        self._saved: list[tuple[object, str, object]] = []

    def _tick(self, what: str) -> bool:
        """True when this call is the one that dies."""
        if self.dead:
            raise Killed(f"already dead ({what})")
        self.calls += 1
        self.log.append(what)
        if self.n is not None and self.calls >= self.n:
            self.dead = True
            return True
        return False

    def _wrap_plain(self, original, name):
        def wrapper(*args, **kwargs):
            if self._tick(f"{name} {args[0] if args else ''}"):
                raise Killed(f"died at {name}")
            return original(*args, **kwargs)

        return wrapper

    def _wrap_tensor_write(self, original):
        def wrapper(tensors, filename, *args, **kwargs):
            dies = self._tick(f"save_file {filename}")
            original(tensors, filename, *args, **kwargs)
            if dies:  # half of the bytes reached the disk
                os.truncate(filename, os.path.getsize(filename) // 2)
                raise Killed("died writing tensors")

        return wrapper

    def _wrap_text_write(self, original):
        def wrapper(path, data, *args, **kwargs):
            if self._tick(f"write_text {path}"):
                original(path, data[: len(data) // 2], *args, **kwargs)
                raise Killed("died writing text")
            return original(path, data, *args, **kwargs)

        return wrapper

    def __enter__(self) -> DieAt:
        for owner, name in _PLAIN:
            self._patch(owner, name, self._wrap_plain(getattr(owner, name), name))
        for owner, name in _TENSOR_WRITES:
            self._patch(owner, name, self._wrap_tensor_write(getattr(owner, name)))
        self._patch(Path, "write_text", self._wrap_text_write(Path.write_text))
        return self

    def _patch(self, owner, name, value) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def __exit__(self, *exc) -> bool:
        for owner, name, value in reversed(self._saved):
            setattr(owner, name, value)
        for key, entry in list(locks._held.items()):  # the kernel drops a dead process's locks
            os.close(entry[2])
            del locks._held[key]
        return exc[0] is Killed


def count_calls(scenario) -> int:
    """How many counted filesystem calls ``scenario()`` makes when nothing fails."""
    with DieAt(None) as counter:
        scenario()
    return counter.calls


def die_during(scenario, n: int) -> bool:
    """Run ``scenario()`` dying at the nth call; True if it died."""
    with DieAt(n) as fault:
        scenario()
    return fault.dead
