"""The truncated relation by operand length over training: each snapshot of a run, finished or not.

    python analyses/follow_up_curve.py RUN_DIR [RUN_DIR ...] [--lengths 4-9] [--n 300] [--from-step S] [--out FILE]

For every snapshot (and the final model, when the run finished) of each run directory, exact match
and the share of answers equal to the truncated relation (a mod 10^n) op (b mod 10^n) at each operand
length (:func:`mechinterp_arith.analysis.relation_by_length.relations_by_length`; both operands m
digits, ``--n`` pairs a length, seed 0), and the best relation the equivalence search names. A run
that was stopped before it finished (``train_state.safetensors`` and snapshots, no ``config.json``)
is read from its saved state's settings. ``--from-step`` skips earlier snapshots (to finish an
interrupted curve). Prints one JSON line per snapshot; ``--out`` also writes them as one JSON file
(analyses/add4_tries.py collects the add4 runs' curves; docs/findings.md, "to 9 digits"). One torch
thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechinterp_arith import load
from mechinterp_arith.analysis.relation_by_length import relations_by_length
from mechinterp_arith.cli.equivalence_cmd import length_list
from mechinterp_arith.core.checkpoint import CONFIG, load_weights, snapshot_files
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.files import atomic_write_text
from mechinterp_arith.core.model import ModelConfig, build_model
from mechinterp_arith.core.tasks import Task
from mechinterp_arith.core.threads import set_threads
from mechinterp_arith.core.train_state import saved_progress


def run_models(run: Path):
    """``(task, [(step, load_model), ...])``: every snapshot, then the final model of a finished run."""
    if (run / CONFIG).is_file():
        ckpt = load(run, device="cpu")
        steps = ckpt.snapshot_steps()
        models = [(s, lambda s=s: ckpt.load_snapshot(s)) for s in steps]
        final = ckpt.history[-1]["step"]
        if final not in steps:
            models.append((final, lambda: ckpt.model))
        return ckpt.task, models
    settings = saved_progress(run)["run"]  # an interrupted run: its saved state's settings
    task, config = Task.from_dict(settings["task"]), ModelConfig.from_dict(settings["model"])

    def snapshot(file: Path):
        model = build_model(config, device="cpu", task=task)
        load_weights(model, file)
        return model.eval()

    return task, [(s, lambda f=f: snapshot(f)) for s, f in sorted(snapshot_files(run).items())]


def curve(run: Path, lengths: list[int], n: int, from_step: int = 0) -> list[dict]:
    """One row per snapshot step from ``from_step``: ``step``, ``exact``, ``truncated`` and ``best`` by length."""
    task, models = run_models(run)
    rows = []
    for step, model_at in models:
        if step < from_step:
            continue
        model = model_at()
        table = relations_by_length(
            task, lambda a, b, model=model: generate(model, task, a, b).answers, lengths, n=n, seed=0
        )
        rows.append(
            {
                "run": str(run),
                "step": step,
                "n": n,
                "operands": "both",
                "exact": {int(m): round(float(r["exact"]), 4) for m, r in table.iterrows()},
                "truncated": {int(m): round(float(r["truncated"]), 4) for m, r in table.iterrows()},
                "best": {int(m): r["best"] for m, r in table.iterrows()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--lengths", type=length_list, default=list(range(4, 10)), metavar="L-N")
    p.add_argument("--n", type=int, default=300, help="pairs a length (default 300)")
    p.add_argument("--from-step", type=int, default=0, help="skip snapshots before this step")
    p.add_argument("--out", type=Path, default=None, help="also write every row as one JSON file")
    args = p.parse_args()
    set_threads(1)
    rows = [row for run in args.runs for row in curve(run, args.lengths, args.n, args.from_step)]
    if args.out is not None:
        atomic_write_text(args.out, json.dumps({"lengths": args.lengths, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
