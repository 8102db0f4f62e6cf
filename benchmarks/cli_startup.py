"""How fast the command line answers: ``--help``, ``--version``, an argument error, ``train --help``
(target < 1 s each), and how soon a long command says what it is doing.

Prints one JSON object:

* ``seconds``: for each command, the median wall time of ``--repeats`` runs of the installed
  ``mechinterp-arith`` entry point (a fresh process each time, as a user runs it);
* ``python_startup_s``: the same for ``python -c pass`` (the floor: the interpreter alone);
* ``first_line_s`` / ``total_s``: ``mechinterp-arith evaluate add3 --n 1000`` run on a pseudo-terminal:
  seconds until its first line on stderr (what it is starting, printed before torch and
  TransformerLens load) and until it exits;
* ``load_before`` / ``load_after``: the 1-minute load average around the measurements (the machine
  is shared: compare runs made at similar loads).

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "bad argument": ["evaluate", "add3", "--n", "abc"],
    "train --help": ["train", "--help"],
}


def entry_point() -> list[str]:
    """The installed ``mechinterp-arith`` script of this interpreter's environment (else ``python -m``)."""
    script = Path(sys.executable).parent / "mechinterp-arith"
    if script.is_file():
        return [str(script)]
    found = shutil.which("mechinterp-arith")
    return [found] if found else [sys.executable, "-m", "mechinterp_arith"]


def wall(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def first_line_on_a_terminal(argv: list[str]) -> tuple[float, float, str]:
    """Seconds to the first line the command writes to its (pseudo-terminal) stderr, to its exit, and that line."""
    leader, follower = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    first, text = None, b""
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            text += chunk
            if first is None and b"\n" in text:
                first = time.perf_counter() - start
        elif proc.poll() is not None:
            break
    proc.wait()
    total = time.perf_counter() - start
    os.close(leader)
    line = text.split(b"\n", 1)[0].decode(errors="replace").strip()
    return round(first if first is not None else total, 3), round(total, 3), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cli = entry_point()
    load_before = os.getloadavg()[0]
    seconds = {name: wall(cli + argv, args.repeats) for name, argv in COMMANDS.items()}
    floor = wall([sys.executable, "-c", "pass"], args.repeats)
    first, total, line = first_line_on_a_terminal(cli + ["evaluate", "add3", "--n", "1000"])
    print(
        json.dumps(
            {
                "command": " ".join(cli),
                "repeats": args.repeats,
                "seconds": seconds,
                "python_startup_s": floor,
                "first_line_s": first,
                "first_line": line,
                "total_s": total,
                "target_s": 1.0,
                "all_under_target": all(s < 1.0 for s in seconds.values()),
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
                "cores": os.cpu_count(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
