"""What the follow-up's table costs on this CPU: seconds per training step of each configuration.

Prints one JSON object: for each model size (the CPU sweep's 0.10M, analyses/sweeps/follow_up.toml;
the follow-up's 0.82M and 10.73M, analyses/sweeps/follow_up_gpu.toml) and each task layout of the
table (addition, multiplication, modular addition and multiplication; width 9, BOS, answer
reversed), the CPU seconds of one training step (batch 64, AdamW, one torch thread), measured as
the difference between ``train()`` runs of ``--steps + 4`` and 4 steps (the data and model set-up
cancel), and the CPU hours that 20,000 steps x 3 seeds (the GPU spec's budget for a row) would take
at that rate. docs/findings.md, "to 9 digits", gives the rows' reasons from it.

    python benchmarks/follow_up_steps.py [--steps 8] [--sizes 0.10M 0.82M 10.73M]

CPU seconds (``time.process_time``) rather than wall time, so that the load of other processes on
the shared machine changes the figure little (it still shares caches and memory bandwidth).
"""

from __future__ import annotations

import argparse
import json
import time

import mechinterp_arith as ma
from mechinterp_arith.core.model import ModelConfig
from mechinterp_arith.core.threads import set_threads

SIZES = {"0.10M": (2, 4, 64), "0.82M": (4, 4, 128), "10.73M": (6, 6, 384)}
LAYOUTS = {
    "add D_4": (ma.Task("add", 4, format="reversed", width=9, bos=True), "either"),
    "mul D_3": (ma.Task("mul", 3, format="reversed", width=9, bos=True), "either"),
    "addmod p=101 (4 digits)": (ma.Task("addmod", 4, format="reversed", width=9, bos=True, modulus=101), "either"),
    "mulmod p=51 (3 digits)": (ma.Task("mulmod", 3, format="reversed", width=9, bos=True, modulus=51), "either"),
}
ROW_STEPS, ROW_SEEDS = 20_000, 3


def cpu_seconds(task: ma.Task, lengths: str, size: tuple[int, int, int], steps: int) -> float:
    """CPU seconds of ``train()`` for ``steps`` steps (batch 64, the follow-up's optimizer), one thread."""
    layers, heads, d_model = size
    model = ModelConfig.for_task(task, n_layers=layers, n_heads=heads, d_model=d_model, d_mlp=4 * d_model)
    cfg = ma.TrainConfig(
        steps=steps,
        batch_size=64,
        lr=1e-3,
        betas=(0.9, 0.99),
        weight_decay=0.1,
        warmup=100,
        schedule="constant",
        n_train=5000,
        n_test=200,
        eval_every=10**6,
        eval_n=50,
        operand_lengths=lengths,
        device="cpu",
    )
    start = time.process_time()
    ma.train(task, model, cfg, progress=False)
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="steps timed per configuration (default 8)")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    args = p.parse_args()
    set_threads(1)
    rows = []
    for size in args.sizes:
        for layout, (task, lengths) in LAYOUTS.items():
            base = cpu_seconds(task, lengths, SIZES[size], 4)
            per_step = (cpu_seconds(task, lengths, SIZES[size], 4 + args.steps) - base) / args.steps
            rows.append(
                {
                    "size": size,
                    "layers_heads_d_model": SIZES[size],
                    "layout": layout,
                    "cpu_s_per_step": round(per_step, 4),
                    "cpu_hours_per_row": round(per_step * ROW_STEPS * ROW_SEEDS / 3600, 1),
                }
            )
    print(
        json.dumps(
            {"threads": 1, "batch_size": 64, "row": f"{ROW_STEPS} steps x {ROW_SEEDS} seeds", "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
