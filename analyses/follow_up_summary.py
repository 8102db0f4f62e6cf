"""The follow-up's table (issue 25) from a sweep directory: one small JSON and CSV to commit.

    mechinterp-arith sweep analyses/sweeps/follow_up.toml --out /work/runs/follow_up --workers 2
    python analyses/follow_up_summary.py /work/runs/follow_up [--markdown]

Writes ``analyses/results/follow_up_table.json`` (every run of the spec: status, seed, steps, the
``mechinterp-arith train`` command that trains it alone, seconds, the load average when it finished,
its figures; every group: the seed means beside the follow-up's published row,
:func:`mechinterp_arith.report.follow_up_table.follow_up_table`; the spec's groups not finished) and
``analyses/results/follow_up_table.csv`` (the groups). ``--markdown`` prints the groups as the tables
of docs/findings.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from mechinterp_arith.core.files import atomic_write_text, strict_json
from mechinterp_arith.report.follow_up_table import (
    LENGTHS,
    best_text,
    describe_set,
    follow_up_table,
    has_published,
    steps_text,
)
from mechinterp_arith.sweep import load_spec, load_sweep
from mechinterp_arith.sweep.results import SPEC, read_record

RESULTS = Path(__file__).resolve().parent / "results"
RUN_FIGURES = ("train_steps", "train_seconds", "train_loss", "id_exact")


def run_rows(sweep_dir: Path) -> list[dict]:
    """Every run of the directory's spec, in spec order, with its record's command, timing and load."""
    rows = []
    for run in load_spec(sweep_dir / SPEC).runs:
        record = read_record(sweep_dir, run.run_id) or {"status": "pending"}
        figures = record.get("figures") or {}
        rows.append(
            {
                "run_id": run.run_id,
                "group": run.group_id,
                "status": record["status"],
                "set": describe_set({**run.flat, "task": run.task.op}),
                "seed": run.model.seed,
                "steps": run.training.steps,
                "train_command": record.get("train_command"),
                "seconds": record.get("seconds"),
                "load_average": record.get("load_average"),
                **{k: figures.get(k) for k in RUN_FIGURES},
                **{k: v for k, v in figures.items() if k.startswith("len")},
                "error": record.get("error"),
            }
        )
    return rows


def markdown(table: pd.DataFrame) -> str:
    """The groups as markdown: per group, ours and theirs (percent) for exact and truncated, and the best relation."""
    lines = ["| set; model, steps, seeds | row | " + " | ".join(f"m={m}" for m in LENGTHS) + " |"]
    lines.append("| --- | --- |" + " --- |" * len(LENGTHS))

    def pct(v) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    for _, r in table.iterrows():
        what = f"{describe_set(r)}; {r['model']}, {steps_text(r)}, seeds {r['seeds']}"
        cells = {
            "ours: exact": [pct(r.get(f"exact_{m}")) for m in LENGTHS],
            f"theirs ({r['theirs']}): exact": [pct(r.get(f"their_exact_{m}")) for m in LENGTHS],
            "ours: truncated": [pct(r.get(f"truncated_{m}")) for m in LENGTHS],
            "theirs: truncated": [pct(r.get(f"their_truncated_{m}")) for m in LENGTHS],
            "truncated = true on": [pct(r.get(f"truncated_true_{m}")) for m in LENGTHS],
            "best relation (seeds, coverage)": [best_text(r, m) for m in LENGTHS],
        }
        first = True
        for label, values in cells.items():
            if label.startswith("theirs") and not has_published(r):
                continue
            lines.append(f"| {what if first else ''} | {label} | " + " | ".join(values) + " |")
            first = False
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "follow_up_table", help="path without suffix")
    parser.add_argument("--markdown", action="store_true", help="print the groups as markdown tables")
    args = parser.parse_args(argv)
    runs = run_rows(args.sweep_dir)
    table = follow_up_table(load_sweep(args.sweep_dir))
    finished = set(table["group"]) if not table.empty else set()
    pending = sorted({(r["group"], r["set"]) for r in runs if r["group"] not in finished})
    out = {
        "sweep_dir": str(args.sweep_dir),
        "spec": (args.sweep_dir / SPEC).read_text(encoding="utf-8"),
        "runs": runs,
        "groups": json.loads(table.to_json(orient="records")) if not table.empty else [],
        "groups_not_finished": [{"group": g, "set": s} for g, s in pending],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), strict_json(out, indent=1) + "\n")
    atomic_write_text(args.out.with_suffix(".csv"), table.to_csv(index=False))
    print(f"wrote {args.out.with_suffix('.json')} ({len(runs)} runs) and .csv ({len(table)} groups)")
    if args.markdown and not table.empty:
        print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
