"""``discover`` per answer digit on the length-generalisation lab's coupled model, on pairs of
``--operand-digits`` (default 6) digit operands: prints one JSON object.

Target (issue 23): <= 20 s per digit on one thread, on the lab's coupled model (the documented lab
recipe, docs/length_generalisation.md: 1 layer, 4 heads, d_model 64, operands of up to 3 digits,
width 6; seed 0). The model is read from ``--checkpoint``; when that directory holds none it is
trained there first by the lab's own command (``analyses/length_generalisation.py``, one thread,
several minutes; not timed). Each digit is timed alone, in this process after the imports: wall
seconds and this process's CPU seconds (on a shared machine wall time also counts waiting), with
the load average before and after. ``operand_digits`` is ``discover``'s parameter (the CLI's
``--operand-digits``).

    python benchmarks/discovery_coupled.py --checkpoint /tmp/lab/coupling_s0 [--operand-digits 6] [--digits 0 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lab_training_command(out: Path) -> list[str]:
    """The lab's training command for coupling seed 0 (analyses/length_generalisation.py's own)."""
    spec = importlib.util.spec_from_file_location("lab", ROOT / "analyses" / "length_generalisation.py")
    lab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab)
    return lab.train_command("coupling", 0, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="the lab's coupling model of seed 0 (trained if absent)"
    )
    p.add_argument("--operand-digits", type=int, default=6)
    p.add_argument("--digits", type=int, nargs="+", default=None, help="answer digits (default: every one)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if not (args.checkpoint / "model.safetensors").is_file():
        command = lab_training_command(args.checkpoint)
        subprocess.run([sys.executable, "-m", "mechinterp_arith", *command[1:]], check=True, env=os.environ)

    import torch

    from mechinterp_arith import load
    from mechinterp_arith.analysis.discovery import discover
    from mechinterp_arith.core.threads import set_threads

    set_threads(args.threads)
    ckpt = load(args.checkpoint, device="cpu")
    digits = args.digits if args.digits is not None else list(range(ckpt.task.answer_width))
    load_before = os.getloadavg()
    rows = []
    for digit in digits:
        wall, cpu = time.perf_counter(), time.process_time()
        circuit = discover(ckpt, digit, operand_digits=args.operand_digits)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(
            {
                "digit": digit,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "edges": circuit.n_edges,
                "share_of_edges": round(circuit.n_edges / circuit.n_edges_total, 4),
                "faithfulness": round(circuit.faithfulness, 4),
                "faithfulness_ci95": [round(x, 4) for x in circuit.faithfulness_ci95],
                "digit_kept": round(circuit.agreement, 4),
                "pairs": circuit.pairs,
            }
        )
    config = json.loads((args.checkpoint / "config.json").read_text())
    print(
        json.dumps(
            {
                "benchmark": "discover per answer digit on the lab's coupled model, in process, one call per digit",
                "checkpoint": str(args.checkpoint),
                "trained_by": config.get("command"),
                "model": ckpt.model_config.to_dict(),
                "operand_digits": args.operand_digits,
                "threads": args.threads,
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "n_edges_total": circuit.n_edges_total,
                "max_wall_s_per_digit": max(r["wall_s"] for r in rows),
                "max_cpu_s_per_digit": max(r["cpu_s"] for r in rows),
                "target_s_per_digit": 20,
                "all_faithful": all(r["faithfulness"] >= 0.9 for r in rows),
                "all_small": all(r["share_of_edges"] <= 0.1 for r in rows),
                "digits": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
