"""Files written so that a reader never sees half of one: a temporary sibling, then a rename.

Errors name the file being written, never the hidden temporary (a full disk while safetensors
writes is an ``OSError`` naming the target too). Strict JSON (:func:`strict_json`) writes NaN and
infinities as ``null``. :func:`require_regular_file` refuses, before reading, what is not a regular
file: a FIFO would block a reader forever.

>>> atomic_write_text(Path("/tmp/example.txt"), "hello")        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import Tensor


@contextlib.contextmanager
def errors_naming(path: Path) -> Iterator[None]:
    """Re-raise an OSError from inside the block as one naming ``path`` (the target, not a temporary);
    a safetensors write that failed on the file system (e.g. a full disk) becomes such an OSError."""
    try:
        yield
    except SafetensorError as e:
        found = re.search(r"code: (\d+)", str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None
    except OSError as e:
        if e.filename == str(path):
            raise
        if e.errno is None:
            raise type(e)(f"cannot write {path}: {e}") from None
        raise type(e)(e.errno, e.strerror, str(path)) from None


def require_regular_file(path: Path, what: str = "file") -> Path:
    """``path`` when it is a regular file (symbolic links followed); else OSError naming it: missing,
    a directory, or a FIFO, socket or device (reading a FIFO blocks forever)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no such {what}", str(path)) from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, f"is a directory, not a {what}", str(path))
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise OSError(errno.EINVAL, f"is {kind}, not a regular {what}; replace it with the real file", str(path))
    return path


def _temporary(path: Path) -> tuple[int, str]:
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file through a temporary sibling and a rename."""
    path = Path(path)
    with errors_naming(path):
        fd, tmp = _temporary(path)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_save_tensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors to a safetensors file through a temporary sibling and a rename."""
    path = Path(path)
    with errors_naming(path):
        fd, tmp = _temporary(path)
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links are not possible)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def strict_json(obj: Any, **dumps_kwargs: Any) -> str:
    """``json.dumps`` of ``obj`` with NaN and infinities written as ``null``: always valid JSON."""
    return json.dumps(json_safe(obj), allow_nan=False, **dumps_kwargs)


def read_json_file(path: Path, what: str = "results file") -> Any:
    """The parsed JSON of a regular file; ValueError naming it when it is not valid JSON (truncated,
    not UTF-8, nested too deep)."""
    try:
        return json.loads(require_regular_file(Path(path), what).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not a valid JSON {what} ({type(e).__name__}: {e})") from None
