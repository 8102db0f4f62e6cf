"""What every command checks before it starts, and the one line it prints when something fails.

:func:`check_args` runs before any command, before torch is imported: sizes (``--n``,
``--batch-size``, ``--steps``, ...) within their ranges, ``--threads`` (and
``$MECHINTERP_ARITH_THREADS``) within the machine's bound, ``--out`` a directory that can be made,
``--html`` a file whose folder exists; :func:`check_device` then checks ``--device``. :func:`one_line` turns an expected failure (bad input,
a file problem, memory or device exhausted) into one line that says what to change; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..core.choices import MAX_SAMPLES

# options that count something: each must be between 1 and MAX_SAMPLES when given
COUNT_OPTIONS = (
    "n",
    "n_id",
    "batch_size",
    "eval_every",
    "eval_n",
    "snapshot_every",
    "n_train",
    "n_test",
    "top",
    "k",
    "relations",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CliError(Exception):
    """A user error the CLI reports as one line."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_count_options(args) -> None:
    for name in COUNT_OPTIONS:
        value = getattr(args, name, None)
        if value is None or isinstance(value, bool):
            continue
        if value < 1:
            raise CliError(f"{_option(name)} must be >= 1, got {value}")
        if value > MAX_SAMPLES:
            raise CliError(f"{_option(name)} must be at most {MAX_SAMPLES:,}, got {value:,}")


def _first_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: Path, option: str = "--out") -> None:
    """A directory that exists or can be made, and can be written."""
    if path.exists() and not path.is_dir():
        raise CliError(f"{option} {path} is a file; give a directory")
    base = _first_existing(path)
    if not base.is_dir():
        raise CliError(f"{option} {path} cannot be made: {base} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise CliError(f"{option} {path}: {base} is not writable")


def check_output_file(path: Path, option: str) -> None:
    """A file path (not a folder) whose folder exists and can be written."""
    if path.is_dir():
        raise CliError(f"{option} {path} is a folder; give a file name, e.g. {path / 'figure.html'}")
    if not path.absolute().parent.is_dir():
        raise CliError(f"{option} {path}: the folder {path.absolute().parent} does not exist")
    if not os.access(path.absolute().parent, os.W_OK | os.X_OK):
        raise CliError(f"{option} {path}: the folder {path.absolute().parent} is not writable")


def check_args(args) -> None:
    """Check the options every command shares before the command does any work (no torch import:
    a bad value is reported at once)."""
    from ..core.threads import resolve_threads

    check_count_options(args)
    try:
        resolve_threads(getattr(args, "threads", None))
    except ValueError as e:
        raise CliError(str(e).replace("threads must", "--threads must", 1)) from None
    if getattr(args, "out", None) is not None:
        check_output_dir(Path(args.out))
    if getattr(args, "html", None) is not None:
        check_output_file(Path(args.html), "--html")


def check_device(args) -> None:
    """``--device`` usable on this machine (imports torch: run after :func:`check_args`)."""
    if getattr(args, "device", None) is not None:
        from ..core.model import resolve_device

        resolve_device(args.device)


def _is_out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError)
        and any(
            s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
        )
    )


def _size(n_bytes: int) -> str:
    """A byte count as people read it: ``512 bytes``, ``3.4 MiB``, ``37,252.9 GiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes} bytes"


def _allocation(text: str) -> str:
    """How much the failed allocation asked for, from torch's message ('' when it does not say)."""
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        return f": it needed {_size(int(found.group(1)))} more"
    found = re.search(r"Tried to allocate ([\d.]+ [KMGT]i?B)", text)  # CUDA
    return f": it needed {found.group(1)} more" if found else ""


def one_line(e: BaseException) -> str | None:
    """The one-line message for an expected failure; None for a bug (which keeps its traceback)."""
    if _is_out_of_memory(e):
        return (
            f"out of memory{_allocation(str(e))}; use a smaller --n or --batch-size, a smaller model, "
            f"or another --device"
        )
    if isinstance(e, OSError) and not isinstance(e, (ValueError, CliError)):
        if e.filename is not None and e.strerror:
            return f"{e.filename}: {e.strerror}"
    elif not isinstance(e, (CliError, ValueError)):
        return None
    text = _ANSI.sub("", str(e)).strip() or type(e).__name__
    return " ".join(text.split())
