"""The add4 tries of issue 25: every run trained towards its target, in one JSON file to commit.

    python analyses/follow_up_curve.py RUN_DIR ... --out CURVES.json        # the curves, first
    python analyses/add4_tries.py NAME=RUN_DIR ... --curves CURVES.json ... [--out analyses/results/add4_tries.json]

The target: the shipped add4 follows (a mod 10^4) + (b mod 10^4) on >= 0.95 of inputs with both
operands of 9 digits (the follow-up's 10.73M model: 100%). For each run (a finished checkpoint or a
run stopped before its end, read from its saved state): its settings (zero-padding width, size,
weight decay, planned steps, the target accuracy that stops it), the step it reached, its held-out
evaluations during training, the ``mechinterp-arith train`` command of a finished run, and its curve:
exact match and the truncated relation's share at operand lengths 4..9 at every snapshot
(analyses/follow_up_curve.py's rows, matched by run directory). docs/findings.md, "to 9 digits",
shows the table this gives.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechinterp_arith.core.checkpoint import CONFIG, read_config, read_history
from mechinterp_arith.core.files import atomic_write_text, strict_json
from mechinterp_arith.core.train_state import saved_progress

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = ("steps", "lr", "weight_decay", "warmup", "schedule", "target_accuracy", "eval_every", "batch_size")


def run_summary(name: str, run: Path, curves: list[dict]) -> dict:
    """The run's settings, the step it reached, its evaluations and its curve rows (by step)."""
    finished = (run / CONFIG).is_file()
    if finished:
        settings, history = read_config(run), read_history(run)
        reached = history[-1]["step"]
    else:
        progress = saved_progress(run)
        settings, history, reached = progress["run"], progress["history"], progress["step"]
    task, model, training = settings["task"], settings["model"], settings["training"]
    rows = sorted((r for r in curves if Path(r["run"]).resolve() == run.resolve()), key=lambda r: r["step"])
    return {
        "name": name,
        "dir": str(run),
        "finished": finished,
        "width": task["width"],
        "operand_lengths": training.get("operand_lengths"),
        "model": {k: model[k] for k in ("n_layers", "n_heads", "d_model", "seed")},
        **{k: training.get(k) for k in SETTINGS},
        "step_reached": reached,
        "command": settings.get("command"),
        "trained_on": settings.get("trained_on"),
        "evaluations": [{k: e.get(k) for k in ("step", "loss", "id_exact", "elapsed_s")} for e in history],
        "curve": [{k: r.get(k) for k in ("step", "n", "operands", "exact", "truncated", "best")} for r in rows],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--curves", nargs="*", type=Path, default=[], help="follow_up_curve.py --out files")
    parser.add_argument("--note", action="append", default=[], metavar="NAME=TEXT", help="what a run was for")
    parser.add_argument("--out", type=Path, default=RESULTS / "add4_tries.json")
    args = parser.parse_args(argv)
    curves = [row for f in args.curves for row in json.loads(f.read_text(encoding="utf-8"))["rows"]]
    notes = dict(n.split("=", 1) for n in args.note)
    tries = []
    for spec in args.runs:
        name, run = spec.split("=", 1)
        tries.append({**run_summary(name, Path(run), curves), "note": notes.get(name)})
    out = {
        "target": "(a mod 10^4) + (b mod 10^4) on >= 0.95 of pairs with both operands of 9 digits",
        "curve_protocol": "analyses/follow_up_curve.py: both operands m digits, n pairs a length, seed 0, one thread",
        "tries": tries,
    }
    atomic_write_text(args.out, strict_json(out, indent=1) + "\n")
    for t in tries:
        last = t["curve"][-1] if t["curve"] else None
        nine = f"{last['truncated'].get('9', last['truncated'].get(9))} at step {last['step']}" if last else "no curve"
        print(
            f"{t['name']}: width {t['width']}, step {t['step_reached']} of {t['steps']}; truncated at 9 digits {nine}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
