"""One writer per output: an advisory lock file, beside the path it guards, naming its owner's pid.

``train``, ``import`` and ``report`` hold the lock of their output for as long as they write it;
a second writer (another process, or another thread of this one) gets :class:`OutputLocked`
naming the owner at once, before any work. The lock is ``fcntl.flock`` on ``.NAME.lock`` next to
``NAME``: the kernel drops it when its owner exits, however it dies, so a lock file left by a dead
process is simply taken over. The file is removed on release. Re-entrant within one thread (train
holds it and calls ``save_checkpoint``, which takes it too).

A path reached through a symbolic link is locked (and written) as the path it resolves to
(:func:`output_path`), so ``--out real`` and ``--out alias`` (``alias -> real``) are one output.
The lock file itself is opened without following links and must be a regular file: a symbolic
link planted as ``.NAME.lock`` is refused, never written through.

Hand-written rather than ``filelock``: its ``FileLock`` truncates the lock file on every attempt,
so the owner's pid could not be reported. POSIX only (Linux, macOS); where ``fcntl`` is missing
the lock is a no-op. Advisory: it binds this package's writers, not ``rm`` or ``cp``.

>>> with exclusive(Path("runs/add2")):          # doctest: +SKIP
...     ...                                      # runs/.add2.lock holds this process's pid
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]  # checked before use (exclusive)


class OutputLocked(ValueError):
    """The output is being written by another process or thread; the message names it."""


_held: dict[str, list[int]] = {}  # lock file -> [thread ident, depth, fd]
_guard = threading.Lock()


def output_path(path: str | Path) -> Path:
    """The absolute path an output really is: symbolic links (of the path and its folders) resolved,
    so that two names of one directory share one lock and a link is never replaced by a directory."""
    return Path(path).resolve()


def lock_file(path: str | Path) -> Path:
    """The lock file guarding ``path``: ``.NAME.lock`` in the folder of the resolved path."""
    path = output_path(path)
    return path.parent / f".{path.name}.lock"


def _open_lock_file(lock: Path) -> int:
    """A read-write descriptor of the lock file (created if absent), never through a symbolic link
    and never of anything but a regular file (a FIFO would block, a link would be written through)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputLocked(
                f"the lock file {lock} is a symbolic link; refusing to write through it: remove it"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputLocked(f"the lock file {lock} is not a regular file; remove it")
    return fd


def _owner(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return f"process {text}" if text.isdigit() else "another process"


def _open_locked(lock: Path, target: Path) -> int:
    """A descriptor holding the flock of ``lock`` (the file still at that path), or OutputLocked."""
    while True:
        fd = _open_lock_file(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise OutputLocked(
                f"{target} is being written by {owner} (lock file {lock}); wait for it to "
                f"finish or choose another output"
            ) from None
        try:  # its previous owner may have removed the file between our open and our lock
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[Path]:
    """Hold the lock of ``path`` (a file or directory about to be written) inside the block.

    Raises :class:`OutputLocked` naming the owner when another process or thread holds it. The
    folder that will hold ``path`` is created if needed. Yields the lock file's path.
    """
    path = output_path(path)
    lock = lock_file(path)
    if fcntl is None:  # pragma: no cover
        yield lock
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(lock)
    with _guard:
        entry = _held.get(key)
        if entry is not None and entry[0] != threading.get_ident():
            raise OutputLocked(f"{path} is being written by another thread of this process (pid {os.getpid()})")
        if entry is None:
            fd = _open_locked(lock, path)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            entry = _held[key] = [threading.get_ident(), 0, fd]
        entry[1] += 1
    try:
        yield lock
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock)  # while still holding it: a waiting opener then sees a new inode
                finally:
                    del _held[key]
                    os.close(entry[2])
