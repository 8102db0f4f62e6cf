"""The command line as a user runs it: in process (the console script's code path) or in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from mechinterp_arith.cli import main

from . import HANG_TIMEOUT_S


def run_in_process(capsys, *args: object) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``mechinterp-arith ARGS`` run in this process."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(capsys, *args: object) -> Any:
    """The JSON object printed by ``mechinterp-arith ARGS`` (which must exit 0 and include ``--json``)."""
    code, out, err = run_in_process(capsys, *args)
    assert code == 0, err
    return json.loads(out)


def run_console(*args: object, timeout: float = HANG_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``python -m mechinterp_arith ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mechinterp_arith", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
