"""The truncated relation by operand length over training: each snapshot of finished checkpoints.

    python analyses/follow_up_curve.py RUN_DIR [RUN_DIR ...] [--lengths 4-9] [--n 300] [--out FILE]

For every snapshot (and the final model) of each checkpoint directory, exact match and the share of
answers equal to the truncated relation (a mod 10^n) op (b mod 10^n) at each operand length
(:func:`mechinterp_arith.analysis.relation_by_length.relations_by_length`; both operands m digits,
``--n`` pairs a length, seed 0). Prints one JSON line per snapshot; ``--out`` also writes them as one
JSON file (docs/findings.md, "to 9 digits", shows the add4 runs' curves this way). One torch thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechinterp_arith import load
from mechinterp_arith.analysis.relation_by_length import relations_by_length
from mechinterp_arith.cli.equivalence_cmd import length_list
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.files import atomic_write_text
from mechinterp_arith.core.threads import set_threads


def curve(run: Path, lengths: list[int], n: int) -> list[dict]:
    """One row per snapshot step (then the final model): ``step``, ``exact`` and ``truncated`` by length."""
    ckpt = load(run, device="cpu")
    steps = ckpt.snapshot_steps()
    final = ckpt.history[-1]["step"]
    rows = []
    for step in steps + ([final] if final not in steps else []):
        model = ckpt.load_snapshot(step) if step in steps else ckpt.model
        table = relations_by_length(
            ckpt.task, lambda a, b, model=model: generate(model, ckpt.task, a, b).answers, lengths, n=n, seed=0
        )
        rows.append(
            {
                "run": str(run),
                "step": step,
                "n": n,
                "exact": {int(m): round(float(r["exact"]), 4) for m, r in table.iterrows()},
                "truncated": {int(m): round(float(r["truncated"]), 4) for m, r in table.iterrows()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--lengths", type=length_list, default=list(range(4, 10)), metavar="L-N")
    p.add_argument("--n", type=int, default=300, help="pairs a length (default 300)")
    p.add_argument("--out", type=Path, default=None, help="also write every row as one JSON file")
    args = p.parse_args()
    set_threads(1)
    rows = [row for run in args.runs for row in curve(run, args.lengths, args.n)]
    if args.out is not None:
        atomic_write_text(args.out, json.dumps({"lengths": args.lengths, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
