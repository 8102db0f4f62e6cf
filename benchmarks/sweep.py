"""Sweep overhead: a 2-scheme x 4-seed add2 sweep against the same runs laid out by hand.

Prints one JSON object:

* ``by_hand_s``: the 8 runs as `mechinterp-arith train` + `mechinterp-arith evaluate` command pairs,
  two at a time (two queues, each command with one torch thread), wall seconds;
* ``sweep_s``: `mechinterp-arith sweep SPEC --out DIR` (process pool of 2), wall seconds, and
  ``ratio`` = sweep_s / by_hand_s (target <= 1.2);
* ``rerun_s``: the same command again on the finished directory (target < 10 s);
* ``ray_s`` and ``ray_same_figures``: the spec on a local Ray instance (`--ray auto --workers 2`),
  and whether its results.csv figures equal the local sweep's (same seeds -> same numbers);
* ``by_hand_same_figures``: whether the hand-run evaluations equal the sweep's figures.

    python benchmarks/sweep.py [--steps 300] [--skip-ray] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
MODEL = {"n_layers": 2, "n_heads": 2, "d_model": 32}
SCHEMES, SEEDS = ("learned", "rotary"), (0, 1, 2, 3)
OOD = (3, 4, 5)


def spec_text(steps: int, n: int) -> str:
    return f"""[sweep]
name = "bench"
[settings]
task = "add"
digits = 2
n_layers = {MODEL["n_layers"]}
n_heads = {MODEL["n_heads"]}
d_model = {MODEL["d_model"]}
steps = {steps}
batch_size = 128
warmup = 50
eval_every = 100
eval_n = 500
[grid]
positional = {json.dumps(list(SCHEMES))}
seed = {json.dumps(list(SEEDS))}
[analyses]
evaluate = true
equivalence = false
n = {n}
ood_digits = {json.dumps(list(OOD))}
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mechinterp_arith", *args]


def env() -> dict:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def by_hand(root: Path, steps: int, n: int) -> tuple[float, dict]:
    """Each run as train + evaluate commands, two queues in parallel; returns (seconds, figures by run)."""

    def one(scheme: str, seed: int) -> tuple[tuple[str, int], dict]:
        out = root / f"{scheme}-{seed}"
        subprocess.run(
            cli(
                "train",
                "--task",
                "add",
                "--digits",
                "2",
                "--layers",
                str(MODEL["n_layers"]),
                "--heads",
                str(MODEL["n_heads"]),
                "--d-model",
                str(MODEL["d_model"]),
                "--positional",
                scheme,
                "--model-seed",
                str(seed),
                "--seed",
                str(seed),
                "--steps",
                str(steps),
                "--batch-size",
                "128",
                "--warmup",
                "50",
                "--eval-every",
                "100",
                "--eval-n",
                "500",
                "--out",
                str(out),
                "--quiet",
            ),
            check=True,
            env=env(),
            capture_output=True,
        )
        done = subprocess.run(
            cli("evaluate", str(out), "--ood-digits", *map(str, OOD), "--n", str(n), "--json"),
            check=True,
            env=env(),
            capture_output=True,
            text=True,
        )
        result = json.loads(done.stdout)
        return (scheme, seed), {
            "id_exact": result["id"]["exact"],
            **{f"exact_len{m}": r["exact"] for m, r in result["ood"].items()},
        }

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        figures = dict(pool.map(lambda job: one(*job), [(s, seed) for seed in SEEDS for s in SCHEMES]))
    return time.perf_counter() - start, figures


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(cli(*args), check=True, env=env(), capture_output=True)
    return time.perf_counter() - start


def figures_of(sweep_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(sweep_dir / "results.csv")
    return frame.drop(columns=[c for c in frame if c.endswith("seconds")]).set_index("run_id").sort_index()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n", type=int, default=500, help="pairs per evaluation set")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--keep", type=Path, default=None, help="keep the directories here")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "bench.toml"
    spec.write_text(spec_text(args.steps, args.n))
    out = {
        "runs": len(SCHEMES) * len(SEEDS),
        "steps": args.steps,
        "cpu_count": os.cpu_count(),
        "load_avg_before": os.getloadavg(),
    }
    out["by_hand_s"], hand = by_hand(root / "by_hand", args.steps, args.n)
    out["sweep_s"] = timed("sweep", str(spec), "--out", str(root / "local"), "--workers", "2", "--quiet")
    out["ratio"] = round(out["sweep_s"] / out["by_hand_s"], 3)
    out["target_ratio"] = 1.2
    out["rerun_s"] = timed("sweep", str(spec), "--out", str(root / "local"), "--workers", "2", "--quiet")
    local = figures_of(root / "local")
    out["by_hand_same_figures"] = all(
        local.loc[(local.positional == s) & (local.seed == seed), list(f)].iloc[0].tolist() == list(f.values())
        for (s, seed), f in hand.items()
    )
    if not args.skip_ray:
        out["ray_s"] = timed(
            "sweep", str(spec), "--out", str(root / "ray"), "--ray", "auto", "--workers", "2", "--quiet"
        )
        out["ray_same_figures"] = bool(local.equals(figures_of(root / "ray")))
    out["load_avg_after"] = os.getloadavg()
    out = {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}
    print(json.dumps(out))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
