"""Numbers of any size: time and peak memory of sampling, encoding and evaluating pairs of m-digit operands.

For each m (default 3, 20, 100), in a fresh process: draw ``--n`` pairs with both operands exactly m
digits (``data.ood_lengths``), encode them (``Task.encode_batch``) and score a model's greedy answers
(``evaluate.accuracy``: decoding, the true answers, exact and per-digit match); then, timed apart, the
relation search on those answers (``find_relation``: 2m + 2 candidate relations). m = 3 uses the shipped
``add3`` (3-digit addition, width 5); other m an untrained model of add3's architecture built for
``Task("add", m, width=m)`` (the cost of decoding does not depend on the weights). Prints one JSON
object: per m, wall seconds per stage, the process's peak RSS (``ru_maxrss``, MiB) and the peak of
Python's heap while the stages ran (``tracemalloc``: numpy arrays, Python ints), with the load average
(a shared machine's wall time depends on its other tenants).

Runs on the code before issue 24 too (int64 operands, m <= 17), for the before/after comparison:

    python benchmarks/number_sizes.py [--digits 3 20 100] [--n 10000] [--repeats 3] [--threads 1]
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
import tracemalloc


def measure(m: int, n: int, repeats: int, threads: int) -> dict:
    """The stages for one m, in this process (the best of ``repeats`` timings; memory of the first run)."""
    from dataclasses import replace

    from mechinterp_arith import Task, build_model, data, load
    from mechinterp_arith.analysis.equivalence import find_relation
    from mechinterp_arith.core.decoding import generate
    from mechinterp_arith.core.evaluate import accuracy
    from mechinterp_arith.core.threads import set_threads

    set_threads(threads)
    if m == 3:
        ckpt = load("add3", device="cpu")
        task, model = ckpt.task, ckpt.model
    else:
        task = Task("add", m, width=m)
        cfg = load("add3", device="cpu").model_config
        model = build_model(replace(cfg, n_ctx=task.n_ctx), device="cpu", task=task).eval()
    accuracy(model, task, *data.ood_lengths(task, m, m, 64, seed=1))  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times: dict[str, list[float]] = {"sample_s": [], "encode_s": [], "evaluate_s": []}
    peak_heap = None
    for r in range(repeats):
        if r == 0:
            tracemalloc.start()
        t0 = time.perf_counter()
        a, b = data.ood_lengths(task, m, m, n, seed=0)
        t1 = time.perf_counter()
        tokens, _ = task.encode_batch(a, b)
        t2 = time.perf_counter()
        result = accuracy(model, task, a, b)
        t3 = time.perf_counter()
        if r == 0:
            peak_heap = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[key].append(dt)
    best = {key: round(min(v), 4) for key, v in times.items()}
    answers = generate(model, task, a, b).answers
    t0 = time.perf_counter()
    search = find_relation(task, a, b, answers)
    relation_s = time.perf_counter() - t0
    return {
        "digits": m,
        "n": n,
        "task": f"{task.name} width {task.width}",
        "tokens_per_example": int(tokens.shape[1]),
        **best,
        "total_s": round(sum(best.values()), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_stages_mib": round(rss0 / 1024, 1),
        "peak_python_heap_mib": round(peak_heap / 2**20, 2),
        "exact": result["exact"],
        "relation_search_s": round(relation_s, 4),
        "relations": len(search.relations),
        "answer_type": type(a[0]).__name__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digits", type=int, nargs="+", default=[3, 20, 100])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process for one m
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.n, args.repeats, args.threads)))
        return
    rows = []
    for m in args.digits:
        cmd = [sys.executable, __file__, "--one", str(m), "--n", str(args.n), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd + ["--threads", str(args.threads)], capture_output=True, text=True)
        rows.append(json.loads(out.stdout) if out.returncode == 0 else {"digits": m, "error": out.stderr[-400:]})
    print(
        json.dumps(
            {
                "benchmark": "numbers",
                "results": rows,
                "torch_threads": args.threads,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
