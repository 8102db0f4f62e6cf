"""Training speed: the hooked bridge versus a plain-PyTorch model of the same architecture.

Prints one JSON object: ms per training step for both (same batches, optimizer and loss, same
process, interleaved rounds, median), their ratio (target: hooked <= 1.15x plain), and the seconds
the toolkit's `train` needs to reach 100% exact match on held-out pairs in the add3 setting.

    python benchmarks/train.py [--steps 60] [--batch-size 256] [--device auto] [--skip-convergence]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_gpt import PlainGPT  # noqa: E402

from mechinterp_arith import ModelConfig, Task, TrainConfig, build_model, data, train  # noqa: E402
from mechinterp_arith.core.model import resolve_device  # noqa: E402
from mechinterp_arith.core.model import fused_layernorm
from mechinterp_arith.core.train import TrainingData, answer_loss, batch_indices, make_optimizer  # noqa: E402


def ms_per_step(model, td, device, steps, batch_size, seed=0) -> float:
    """The toolkit's training step (same optimizer, loss and batches) on ``model``."""
    inputs, targets, mask = (t.to(device) for t in (td.inputs, td.targets, td.loss_mask))
    opt = make_optimizer(model, TrainConfig(device=str(device)))
    model.train()
    hooked = hasattr(model, "run_with_cache")

    def step(i):
        rows = batch_indices(len(inputs), batch_size, seed, i).to(device)
        if hooked:
            with fused_layernorm(model):
                logits = model(inputs[rows])
        else:
            logits = model(inputs[rows])
        loss = answer_loss(logits, targets[rows], mask[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(5):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-convergence", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    task = Task("add", 3)
    td = TrainingData.build(task, data.id_split(task, seed=0))
    hooked = build_model(ModelConfig.for_task(task), device=device)
    plain = PlainGPT(n_ctx=task.n_ctx).to(device)
    assert sum(p.numel() for p in hooked.parameters()) == sum(p.numel() for p in plain.parameters())
    h, q = [], []
    for _ in range(args.rounds):  # interleave so machine noise hits both alike
        h.append(ms_per_step(hooked, td, device, args.steps, args.batch_size))
        q.append(ms_per_step(plain, td, device, args.steps, args.batch_size))
    result = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "batch_size": args.batch_size,
        "hooked_ms_per_step": round(statistics.median(h), 3),
        "plain_ms_per_step": round(statistics.median(q), 3),
        "ratio_hooked_over_plain": round(statistics.median(h) / statistics.median(q), 3),
        "target_ratio": 1.15,
    }
    if not args.skip_convergence:
        cfg = TrainConfig(steps=1000, eval_every=50, eval_n=10_000, target_accuracy=1.0, device=str(device))
        t = time.perf_counter()
        _, history, _ = train(task, ModelConfig.for_task(task), cfg, progress=False)
        result["seconds_to_100pct_id_exact"] = round(time.perf_counter() - t, 1)
        result["steps_to_100pct_id_exact"] = int(history["step"].iloc[-1])
        result["reached_100pct"] = bool(history["id_exact"].iloc[-1] >= 1.0)
        result["held_out_pairs_scored"] = 10_000
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
