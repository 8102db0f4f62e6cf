"""The length-generalisation lab: every position scheme trained on addition of operands of up to 3
digits, then scored and analysed at 3..6 digits (docs/length_generalisation.md).

    python analyses/length_generalisation.py --out /tmp/lab [--schemes coupling learned] [--seeds 0 1 2 3 4]

Each model is trained by the `mechinterp-arith train` command it records (one at a time,
single-threaded); models already in ``--out`` are not retrained. Every (scheme, seed, operand length)
becomes a row of ``--results`` (default analyses/results/length_generalisation.json) with the
training command, steps, seconds and load average, and the measures of
:func:`mechinterp_arith.analysis.length_generalisation.length_profile`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mechinterp_arith import load
from mechinterp_arith.analysis.length_generalisation import length_profile
from mechinterp_arith.core.files import atomic_write_text
from mechinterp_arith.core.position_schemes import SCHEMES
from mechinterp_arith.core.threads import set_threads

RESULTS = Path(__file__).resolve().parent / "results" / "length_generalisation.json"
# the same data, model and optimisation for every scheme (Cho et al.'s 1-layer, 4-head decoder, scaled down)
# (optimisation flags spelled out, so the recorded commands keep their meaning when defaults change)
RECIPE = [
    "--task",
    "add",
    "--digits",
    "3",
    "--width",
    "6",
    "--format",
    "reversed",
    "--operand-lengths",
    "mixed",
    "--layers",
    "1",
    "--heads",
    "4",
    "--d-model",
    "64",
    "--steps",
    "2000",
    "--batch-size",
    "256",
    "--warmup",
    "200",
    "--eval-every",
    "250",
    "--eval-n",
    "2000",
    # the lab's models predate coupling's distractor-digit and end-token defaults (issue 24): pinned to
    # what they were trained with, so a rerun trains the models the lab measured
    "--no-distractors",
    "--end-token-loss",
]


def recipe(steps: int | None = None) -> list[str]:
    """The shared training flags, with ``steps`` instead of the recipe's when given."""
    flags = list(RECIPE)
    if steps is not None:
        flags[flags.index("--steps") + 1] = str(steps)
    return flags


def train_command(scheme: str, seed: int, out: Path, steps: int | None = None) -> list[str]:
    return [
        "mechinterp-arith",
        "train",
        *recipe(steps),
        "--positional",
        scheme,
        "--model-seed",
        str(seed),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--quiet",
    ]


def train_one(scheme: str, seed: int, out: Path, steps: int | None = None) -> dict:
    """Train (unless done) and return the run's bookkeeping."""
    command = train_command(scheme, seed, out, steps)
    log = out / "lab_training.json"  # load average around the training (this script's bookkeeping)
    if not (out / "model.safetensors").is_file():
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        load_before = os.getloadavg()[0]
        subprocess.run([sys.executable, "-m", "mechinterp_arith", *command[1:]], check=True, env=env)
        atomic_write_text(
            log, json.dumps({"train_load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
        )
    config = json.loads((out / "config.json").read_text())
    history = json.loads((out / "metrics.json").read_text())["history"]
    extra = json.loads(log.read_text()) if log.is_file() else {"train_load_average": None}
    return {
        "command": shlex.join(command),
        "steps": history[-1]["step"],
        "train_seconds": history[-1]["elapsed_s"],
        "recorded_command": config.get("command"),
        **extra,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="directory of the trained checkpoints")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--ood-digits", nargs="+", type=int, default=[4, 5, 6])
    p.add_argument("--n", type=int, default=2000, help="pairs per operand length")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--steps", type=int, default=None, help="training steps instead of the recipe's 2,000")
    args = p.parse_args(argv)
    set_threads(1)
    rows = json.loads(args.results.read_text())["rows"] if args.results.is_file() else []
    done = {(r["scheme"], r["seed"]) for r in rows}
    for scheme in args.schemes:
        for seed in args.seeds:
            if (scheme, seed) in done:
                continue
            out = args.out / f"{scheme}_s{seed}"
            run = train_one(scheme, seed, out, args.steps)
            start, load_before = time.perf_counter(), os.getloadavg()[0]
            profile = length_profile(load(out, device="cpu"), args.ood_digits, n=args.n)
            analysis = {
                "analysis_seconds": round(time.perf_counter() - start, 1),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            }
            for m, row in profile.iterrows():
                rows.append(
                    {
                        "scheme": scheme,
                        "seed": seed,
                        "m": int(m),
                        **run,
                        **analysis,
                        **{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
                    }
                )
            atomic_write_text(
                args.results, json.dumps({"n": args.n, "recipe": recipe(args.steps), "rows": rows}, indent=1) + "\n"
            )
            print(
                f"{scheme} seed {seed}: " + ", ".join(f"{int(m)}-digit {r.exact:.3f}" for m, r in profile.iterrows()),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
