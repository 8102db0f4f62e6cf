"""A training command beside a busy process, timed: prints one JSON object.

Target (the thread policy, docs/training.md): with one torch thread per process (the default), a
150-step training of a small add2 model started as a command finishes beside a process that keeps
one core busy within 2x of its time alone. torch's own default (one OpenMP thread per core) made it
more than 10x slower. Each case runs twice, interleaved, after a warm-up, in one fresh interpreter
with no thread variables set (as a user would run it). Reported: the wall seconds of each run, the
ratio of the best busy run to the best run alone, the thread count the command ran with, and the
load average before and after (on a shared machine the ratio also counts other sessions' work).

    python benchmarks/threads.py [--steps 150] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "MECHINTERP_ARITH_THREADS"

WORKLOAD = textwrap.dedent("""
    import json, subprocess, sys, time
    import torch
    from mechinterp_arith.cli import main
    tmp, steps, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    args = ["train", "--task", "add", "--digits", "2", "--layers", "1", "--heads", "2", "--d-model", "32",
            "--batch-size", "64", "--eval-n", "50", "--quiet", "--no-resume"]
    def seconds(out, steps):
        t = time.perf_counter()
        assert main(args + ["--steps", str(steps), "--eval-every", str(steps), "--out", f"{tmp}/{out}"]) == 0
        return time.perf_counter() - t
    seconds("warm", 2)
    alone, busy = [], []
    for i in range(repeats):
        alone.append(seconds(f"alone{i}", steps))
        sibling = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.2)
            busy.append(seconds(f"busy{i}", steps))
        finally:
            sibling.kill()
            sibling.wait()
    print(json.dumps({"alone": alone, "busy": busy, "threads": torch.get_num_threads()}))
""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", ENV_VAR)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [sys.executable, "-c", WORKLOAD, tmp, str(args.steps), str(args.repeats)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if res.returncode != 0:
            sys.exit(f"the workload failed: {res.stderr.strip()[-2000:]}")
        timing = json.loads(res.stdout.strip().splitlines()[-1])
        recorded = json.loads((Path(tmp) / "busy0" / "config.json").read_text())["runtime"]["threads"]
    ratio = min(timing["busy"]) / min(timing["alone"])
    print(
        json.dumps(
            {
                "benchmark": f"mechinterp-arith train (add2, {args.steps} steps) alone and beside a busy process",
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "threads": timing["threads"],
                "threads_recorded": recorded,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "alone_s": [round(x, 2) for x in timing["alone"]],
                "busy_s": [round(x, 2) for x in timing["busy"]],
                "busy_over_alone": round(ratio, 3),
                "target": "busy_over_alone <= 2",
                "met": ratio <= 2,
            }
        )
    )


if __name__ == "__main__":
    main()
