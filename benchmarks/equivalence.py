"""Time the equivalence analysis of 100,000 OOD samples (target: under 30 s on a 2-core CPU).

Timed: generating the model's answers on the OOD pairs and on their ID representatives
(200,000 greedy decodes through the key/value-cached fast path) plus the relation search,
per-digit view and consistency. Prints one JSON object, including the process's CPU time and
the machine's load average, since a shared machine's wall time depends on its other tenants.

    python benchmarks/equivalence.py [--n 100000] [--ckpt add3] [--m 4] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from mechinterp_arith import data
from mechinterp_arith.analysis.equivalence import analyse_set
from mechinterp_arith.core.checkpoint import load
from mechinterp_arith.core.threads import set_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="add3")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--m", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        set_threads(args.threads)
    ckpt = load(args.ckpt, device="cpu")
    a, b = data.ood_both(ckpt.task, args.m, args.n, seed=0)
    analyse_set(ckpt.model, ckpt.task, a[:256], b[:256])  # warm-up
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = analyse_set(ckpt.model, ckpt.task, a, b)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "benchmark": "equivalence",
                "checkpoint": args.ckpt,
                "ood_digits": args.m,
                "n": args.n,
                "decodes": 2 * args.n,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "target_s": 30,
                "within_target": wall < 30,
                "samples_per_s": round(args.n / wall),
                "torch_threads": torch.get_num_threads(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "best_relation": result.best.name if result.best else None,
                "coverage": round(result.search.top.coverage, 6),
            }
        )
    )


if __name__ == "__main__":
    main()
