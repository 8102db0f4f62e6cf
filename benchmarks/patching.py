"""Batched patching vs ``transformer_lens.patching`` on add3 (or ``--checkpoint``): prints one JSON object.

The five TL functions (resid_pre, attn_out, mlp_out, head out all_pos, head out by_pos) against
the drop-ins of ``mechinterp_arith.analysis.patching``, on ``--n`` pairs (default 64) whose answers
differ only in digit ``--digit`` (default 1), metric: logit difference at that answer position
(``metrics.logit_diff_metric``, which declares the one position it reads, so the drop-ins skip
positions after it). Also timed: the same metric wrapped in a lambda that declares nothing, as a
metric written for TL would be (its read positions are then inferred by probing it). Every call
gets the same corrupted tokens, as the sweeps of one session do: after the first call the
drop-ins reuse the corrupted run (TL recomputes it each time). Both sides are timed on the same
thread count (best of ``--repeats``, process CPU seconds); results are compared (max abs difference).
``fast_vs_hooks`` is the drop-ins' fast path against their own hook path (``method="hooks"``: the
bridge with one hook per patched activation), the speed-up issue 23 asks of coupled models (>= 10x):
e.g. on the length-generalisation lab's coupled model (docs/length_generalisation.md) with pairs of
6-digit operands, ``--checkpoint DIR/coupling_s0 --operand-digits 6``.

    python benchmarks/patching.py [--n 64] [--digit 1] [--threads 1] [--repeats 5] [--checkpoint C] [--operand-digits M]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import torch

FUNCTIONS = (
    "get_act_patch_resid_pre",
    "get_act_patch_attn_out",
    "get_act_patch_mlp_out",
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--digit", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="best of this many runs per side")
    p.add_argument("--checkpoint", default="add3")
    p.add_argument("--operand-digits", type=int, default=None, help="pairs of operands of exactly M digits")
    args = p.parse_args()
    from mechinterp_arith.core.threads import set_threads

    set_threads(args.threads)
    warnings.simplefilter("ignore")

    from transformer_lens import patching as tl_patching

    from mechinterp_arith import load
    from mechinterp_arith.analysis import patching as fast
    from mechinterp_arith.analysis.metrics import logit_diff_metric
    from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit

    ckpt = load(args.checkpoint, device="cpu")
    model = ckpt.model
    pairs = differ_in_answer_digit(ckpt.task, args.digit, n=args.n, seed=0, operand_digits=args.operand_digits)
    metric = logit_diff_metric(pairs, args.digit)
    with torch.inference_mode():
        _, clean_cache = model.run_with_cache(pairs.clean_tokens)

    def timed(module, name, patching_metric=metric, **kw):
        """Best-of-repeats CPU time of this process (the machine is shared, so wall time is noisy;
        both sides run on ``--threads`` threads), and the result."""
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t0, w0 = time.process_time(), time.perf_counter()
            out = getattr(module, name)(model, pairs.corrupted_tokens, clean_cache, patching_metric, **kw)
            best = min(best, time.process_time() - t0)
            wall[0] += time.perf_counter() - w0
        return best, out

    wall = [0.0]

    timed(fast, FUNCTIONS[0])  # warm-up (builds and checks the plain forward)
    undeclared = lambda logits: metric(logits)
    rows, tl_total, ours_total, hooks_total, undeclared_total, worst = {}, 0.0, 0.0, 0.0, 0.0, 0.0
    for name in FUNCTIONS:
        t_tl, ref = timed(tl_patching, name)
        t_ours, out = timed(fast, name)
        t_hooks, out_h = timed(fast, name, method="hooks")
        t_und, out_u = timed(fast, name, patching_metric=undeclared)
        diff = max(float((o - ref).abs().max()) for o in (out, out_h, out_u))
        worst = max(worst, diff)
        rows[name] = {
            "tl_s": round(t_tl, 3),
            "ours_s": round(t_ours, 3),
            "hooks_path_s": round(t_hooks, 3),
            "undeclared_metric_s": round(t_und, 3),
            "speedup": round(t_tl / t_ours, 1),
            "speedup_undeclared_metric": round(t_tl / t_und, 1),
            "max_abs_diff": diff,
            "shape": list(ref.shape),
        }
        tl_total += t_tl
        ours_total += t_ours
        hooks_total += t_hooks
        undeclared_total += t_und
    print(
        json.dumps(
            {
                "benchmark": "activation patching, five TL functions vs batched drop-ins",
                "checkpoint": args.checkpoint,
                "positional": ckpt.model_config.positional,
                "operand_digits": args.operand_digits,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "n_pairs": args.n,
                "answer_digit": args.digit,
                "pairs": pairs.description,
                "threads": args.threads,
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
                "timing": "process CPU seconds, best of --repeats",
                "wall_s_all_runs": round(wall[0], 1),
                "tl_total_s": round(tl_total, 3),
                "ours_total_s": round(ours_total, 3),
                "speedup": round(tl_total / ours_total, 1),
                "undeclared_metric_total_s": round(undeclared_total, 3),
                "speedup_undeclared_metric": round(tl_total / undeclared_total, 1),
                "hooks_path_total_s": round(hooks_total, 3),
                "hooks_path_speedup": round(tl_total / hooks_total, 1),
                "fast_vs_hooks": round(hooks_total / ours_total, 1),
                "max_abs_diff_vs_tl": worst,
                "functions": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
