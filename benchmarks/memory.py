"""Peak memory of analysis commands against the number of pairs: does it grow with ``--n``?

Each command runs in a fresh process (``mechinterp-arith`` through ``main``, one torch thread) and
reports its peak resident set size (``ru_maxrss``). Prints one JSON object:

* ``runs``: for each command line, ``peak_rss_mb`` and ``seconds``;
* ``growth_mb_per_1000_pairs``: per command, (peak at the larger n - peak at the smaller n) per
  1,000 extra pairs: about 0 when memory is bounded by the batch size;
* ``load_before`` / ``load_after``: the 1-minute load average around the measurements.

    python benchmarks/memory.py [--quick]

``--quick`` uses smaller n (a few minutes on 2 busy cores). Run it with another checkout on
``PYTHONPATH`` to measure that version (the "before" numbers of docs were taken that way).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = """
import resource, sys, time, contextlib, io
from mechinterp_arith.cli import main
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - start)
"""

# command -> (small n, large n), both several batches (evaluate 4,096, match 2,048, patch 256 pairs):
# the allocator's high-water mark settles after a few batches, so the growth between them is what n adds
SIZES = {"evaluate": (10_000, 200_000), "match": (8_192, 32_768), "patch": (1_024, 8_192)}
QUICK = {"evaluate": (10_000, 100_000), "match": (8_192, 16_384), "patch": (1_024, 4_096)}


def argv_of(command: str, n: int) -> list[str]:
    extra = {"evaluate": [], "match": [], "patch": ["--digit", "0"]}[command]
    return [command, "add3", "--n", str(n), "--json", "--device", "cpu", *extra]


def measure(argv: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    code, rss, seconds = r.stdout.split()
    return {"exit": int(code), "peak_rss_mb": round(float(rss), 1), "seconds": round(float(seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--commands", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    load_before, runs, growth = os.getloadavg()[0], {}, {}
    start = time.perf_counter()
    for command in args.commands:
        small, large = sizes[command]
        results = [measure(argv_of(command, n)) for n in (small, large)]
        for n, result in zip((small, large), results):
            runs[" ".join(argv_of(command, n))] = result
        if all("peak_rss_mb" in r for r in results):
            growth[command] = round((results[1]["peak_rss_mb"] - results[0]["peak_rss_mb"]) / (large - small) * 1000, 2)
    print(
        json.dumps(
            {
                "runs": runs,
                "growth_mb_per_1000_pairs": growth,
                "seconds": round(time.perf_counter() - start, 1),
                "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
