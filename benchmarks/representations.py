"""Speed of the representation analyses on add3 (targets: PCA default and logit lens each < 15 s).

Prints one JSON object: seconds for the `pca` command's default computation (10,000 pairs with
operands in [0, 10^4), PCA + separability + OOD projection on 2,000 ID pairs), for the `logit-lens`
default (1,000 ID + 1,000 OOD pairs, greedy OOD answers) and for `match` (1,000 pairs); the
checkpoint load is timed apart.

    python benchmarks/representations.py [--checkpoint add3] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time

import torch

from mechinterp_arith import load
from mechinterp_arith.cli import main


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return time.perf_counter() - start


def run() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="add3")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    start = time.perf_counter()
    load(args.checkpoint, device=args.device)
    load_s = time.perf_counter() - start
    common = [args.checkpoint, "--json", "--device", args.device]
    result = {
        "checkpoint": args.checkpoint,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "pca_default_s": round(timed(["pca", *common]), 2),
        "logit_lens_default_s": round(timed(["logit-lens", *common]), 2),
        "match_default_s": round(timed(["match", *common]), 2),
        "target_s": 15,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "note": "each command's time includes its own checkpoint load",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run()
