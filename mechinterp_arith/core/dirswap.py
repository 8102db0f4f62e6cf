"""Replace a whole directory so that its path holds the old or the new one whatever instant we die.

A new directory is built in a hidden sibling ``.NAME.<random>.tmp`` (:func:`staging_dir`), then
:func:`replace_dir` puts it in place:

- on Linux, one ``renameat2(RENAME_EXCHANGE)`` swaps the two paths atomically: ``NAME`` is the old
  directory until the call and the new one after it; the old one, now under the hidden name, is
  deleted next;
- where the kernel or filesystem cannot exchange, the complete new directory is first renamed to
  ``.NAME.new``, then ``NAME`` to ``.NAME.old``, then ``.NAME.new`` to ``NAME``; between the last two
  renames ``NAME`` is briefly absent, and :func:`recover` puts it back.

:func:`recover` (run by every writer, under the lock of ``NAME``, before it writes) repairs an
interrupted replacement: with ``NAME`` absent it renames ``.NAME.new`` (complete) or else
``.NAME.old`` back to ``NAME``; then it deletes the leftovers ``.NAME.new``, ``.NAME.old`` and
``.NAME.*.tmp``. A leftover holding a training state is deleted only when ``NAME`` holds a
finished checkpoint (the state's run has ended); otherwise :func:`recover` refuses and names it.

Durability covers process death (kill -9, out-of-memory kills, Ctrl-C), not power loss: nothing
is fsynced.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def leftover(path: Path, kind: str) -> Path:
    """``.NAME.new`` / ``.NAME.old``: the fixed names of the non-exchanging replacement."""
    return path.parent / f".{path.name}.{kind}"


def staging_dir(path: str | Path) -> Path:
    """A new empty hidden sibling of ``path`` to build its replacement in (mode 755)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    staging.chmod(0o755)
    return staging


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically (Linux ``renameat2``); False where not supported."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(staging: Path, path: Path) -> None:
    """Put the complete directory ``staging`` at ``path`` (replacing what is there) and delete the old one."""
    if not path.exists():
        os.rename(staging, path)
    elif exchange(staging, path):
        shutil.rmtree(staging)  # now the old directory
    else:
        new, old = leftover(path, "new"), leftover(path, "old")
        os.rename(staging, new)
        os.rename(path, old)
        os.rename(new, path)
        shutil.rmtree(old)


def leftovers(path: Path) -> list[Path]:
    """Hidden siblings an interrupted write of ``path`` may have left."""
    names = {f".{path.name}.new", f".{path.name}.old"}
    if not path.parent.is_dir():
        return []
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name in names
        or (
            p.name.startswith(f".{path.name}.")
            and p.name.endswith(".tmp")
            and p.name.count(".") == path.name.count(".") + 3
        )
    )


def recover(path: str | Path, *, state_file: str, finished_file: str) -> None:
    """Finish or undo an interrupted :func:`replace_dir` of ``path`` and delete its leftovers.

    Call it holding the lock of ``path`` (``core.locks.exclusive``). Raises ValueError, deleting
    nothing, when a leftover holds ``state_file`` (a training state) and ``path`` holds no
    ``finished_file`` (a finished checkpoint).
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        for kind in ("new", "old"):
            if leftover(path, kind).is_dir():
                os.rename(leftover(path, kind), path)
                break
    found = leftovers(path)
    if not (path / finished_file).is_file():
        for p in found:
            if p.is_dir() and (p / state_file).is_file():
                raise ValueError(
                    f"{p} holds the training state of an interrupted run and {path} holds no "
                    f"finished checkpoint; move it to {path} to resume the run, or delete it"
                )
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
