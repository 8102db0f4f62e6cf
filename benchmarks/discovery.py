"""The whole ``mechinterp-arith discover CKPT --json`` (every answer digit), timed: prints one JSON object.

Target (issue 15): on add3, every answer digit's circuit found and verified (faithfulness >= 0.9 on
held-out pairs, <= 10% of TL's edges) in <= 20 s wall on 2 cores, interpreter start and imports
included. The command runs in a fresh interpreter, as a user would run it. Reported: wall time, the
command's CPU seconds (user + system; on a shared machine wall time also counts waiting), the
seconds inside the command after its imports (``discover_seconds``), and the load average before
and after.

    python benchmarks/discovery.py [--checkpoint add3] [--threads 1] [extra discover options...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="add3")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP/MKL threads of the timed command (default 1: the models are too small to gain from "
        "more, and on a shared machine extra threads wait for each other)",
    )
    args, extra = p.parse_known_args()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [sys.executable, "-m", "mechinterp_arith", "discover", args.checkpoint, "--json", "--device", "cpu", *extra]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.exit(f"discover failed: {res.stderr.strip()}")
    out = json.loads(res.stdout)
    circuits = [
        {
            "digit": c["digit"],
            "edges": len(c["edges"]),
            "share_of_edges": round(len(c["edges"]) / c["n_edges_total"], 4),
            "faithfulness": c["faithfulness"],
            "faithfulness_ci95": c["faithfulness_ci95"],
            "digit_kept": c["agreement"],
            "pairs": c["pairs"],
            "seconds": c["seconds"],
        }
        for c in out["circuits"]
    ]
    print(
        json.dumps(
            {
                "benchmark": "mechinterp-arith discover --json, every answer digit, fresh interpreter",
                "checkpoint": args.checkpoint,
                "command": " ".join(cmd[1:]),
                "threads": args.threads,
                "cpu": platform.processor() or platform.machine(),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "wall_s": round(wall, 2),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                "discover_seconds": out["seconds"],
                "n_edges_total": out["circuits"][0]["n_edges_total"] if out["circuits"] else None,
                "all_faithful": all(c["faithfulness"] >= 0.9 for c in circuits),
                "all_small": all(c["share_of_edges"] <= 0.1 for c in circuits),
                "circuits": circuits,
                "skipped": out["skipped"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
