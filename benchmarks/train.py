"""Training speed: step time, add3 to 100% (default recipe vs the study's), ensembles, concurrency.

Prints one JSON object (targets from issue 12; docs/training.md records the figures):

- ``step_ms``: ms per training step at the default batch for the toolkit's step on a hooked
  bridge (its default stacked forward, and the bridge's own forward) and for ``ReferenceGPT``, a
  plain-PyTorch model of the same architecture (same batches, optimizer and loss; same process,
  interleaved rounds, medians). Target: toolkit <= 1.05x plain.
- ``add3``: wall seconds for ``train()`` from scratch until all 10,000 held-out pairs are exact,
  with the default recipe and with the study's (minGPT adder: batch 64, constant lr 5e-4, betas
  0.9/0.95, no warmup), in this run, for seeds 0..N-1 (median). Targets: default <= 15 s on 2
  idle cores, >= 4x faster than the study's. ``speedup_default_over_study.median_steps`` is the
  ratio of steps, what a device whose step costs the same at batch 64 and 128 would see.
- ``ensemble``: wall seconds of K=1 and K=8 seeds for the same steps. Target: K=8 <= 3x K=1.
- ``concurrency``: one training alone vs two at once (separate processes). Target: each <= 1.3x.

Every training in it runs with the ``--threads`` count (``train(..., threads=N)``): one thread by the
toolkit's policy, ``--threads 2`` for "2 idle cores" (concurrency is then skipped by choice: two
two-thread runs on two cores oversubscribe them).

    python benchmarks/train.py [--threads 1] [--seeds 3] [--device auto] [--ensemble-k 8] [--skip-study] [--skip-concurrency]
    python benchmarks/train.py --device cuda --batch-size 512 --lr 1e-2 --warmup 100 --ensemble-k 64 --skip-concurrency

``--batch-size/--lr/--warmup`` change the recipe timed as "default" (the JSON records it): on a
GPU a step costs about the same at batch 64 and 512, so fewer, larger steps are the fast recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_gpt import ReferenceGPT

from mechinterp_arith import ModelConfig, Task, TrainConfig, build_model, data, train, train_ensemble
from mechinterp_arith.core.model import resolve_device
from mechinterp_arith.core.threads import set_threads
from mechinterp_arith.core.train_loop import TrainingRun, make_optimizer
from mechinterp_arith.core.train_step import TrainingData, answer_loss, batch_indices, choose_forward, train_step

TASK = Task("add", 3)
STUDY = dict(batch_size=64, lr=5e-4, betas=(0.9, 0.95), warmup=0, schedule="constant", steps=30_000, anneal_at=None)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def toolkit_stepper(device, forward: str, cfg: TrainConfig, td: TrainingData):
    """The toolkit's step (core/train_step.py) on a fresh gpt-nano bridge."""
    model = build_model(ModelConfig.for_task(TASK), device=device)
    run = TrainingRun(TASK, dataclasses.replace(cfg, forward=forward), model, make_optimizer(model, cfg), None, {})
    fwd = choose_forward([model], td, forward)
    model.train()
    return lambda: train_step([run], td, fwd)


def reference_stepper(device, cfg: TrainConfig, td: TrainingData):
    """The same step (batches, AdamW, clipping, answer loss) on ReferenceGPT."""
    model = ReferenceGPT(n_ctx=TASK.n_ctx).to(device)
    opt = make_optimizer(model, cfg)
    state = {"step": 0}

    def step():
        rows = batch_indices(len(td.inputs), cfg.batch_size, cfg.seed, state["step"]).to(device)
        loss = answer_loss(model(td.inputs[rows]), td.targets[rows], td.loss_mask[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        state["step"] += 1

    return step


def step_ms(device, steps: int, rounds: int) -> dict:
    cfg = TrainConfig(device=str(device))
    td = TrainingData.build(TASK, data.id_split(TASK, seed=0)).to(device)
    steppers = {
        "toolkit": toolkit_stepper(device, "auto", cfg, td),
        "toolkit_bridge_forward": toolkit_stepper(device, "bridge", cfg, td),
        "reference_plain": reference_stepper(device, cfg, td),
    }
    times = {k: [] for k in steppers}
    for _ in range(rounds):  # interleaved, so machine noise hits all alike
        for name, step in steppers.items():
            for _ in range(3):
                step()
            sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
            times[name].append((time.perf_counter() - t) / steps * 1000)
    ms = {k: round(statistics.median(v), 2) for k, v in times.items()}
    return {
        "batch_size": cfg.batch_size,
        **ms,
        "ratio_toolkit_over_plain": round(ms["toolkit"] / ms["reference_plain"], 3),
        "ratio_bridge_forward_over_plain": round(ms["toolkit_bridge_forward"] / ms["reference_plain"], 3),
        "target_ratio": 1.05,
    }


def to_100pct(device, seeds: int, **recipe) -> dict:
    """``train()`` from scratch until every held-out pair is exact, for model and batch seeds
    0..seeds-1 (wall seconds each, model build included); the median seed's figures first."""
    cfg = dataclasses.replace(TrainConfig(device=str(device), target_accuracy=1.0), **recipe)
    runs = []
    for seed in range(seeds):
        t = time.perf_counter()
        _, history, _ = train(
            TASK,
            ModelConfig.for_task(TASK, seed=seed),
            dataclasses.replace(cfg, seed=seed),
            progress=False,
            threads=torch.get_num_threads(),
        )
        last = history.iloc[-1]
        runs.append(
            {
                "seed": seed,
                "seconds": round(time.perf_counter() - t, 2),
                "steps": int(last["step"]),
                "held_out_exact": float(last.get("held_out_exact", "nan")),
                "ood_exact": float(last.get("ood_exact", "nan")),
            }
        )
    return {
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_steps": statistics.median(r["steps"] for r in runs),
        "runs": runs,
        "held_out_pairs": len(data.id_split(TASK, cfg.n_train, cfg.n_test, seed=cfg.data_seed).test_a),
        "recipe": {
            k: cfg.to_dict()[k]
            for k in (
                "batch_size",
                "lr",
                "betas",
                "warmup",
                "schedule",
                "steps",
                "anneal_at",
                "anneal_steps",
                "eval_every",
                "eval_n",
            )
        },
    }


def ensemble_seconds(device, steps: int, k: int = 8) -> dict:
    """Wall seconds of one seed and of ``k`` seeds trained together, for the same steps."""
    cfg = TrainConfig(device=str(device), steps=steps, eval_every=steps)
    out = {}
    for size in (1, k):
        t = time.perf_counter()
        train_ensemble(
            TASK,
            ModelConfig.for_task(TASK),
            cfg,
            list(range(size)),
            progress=False,
            threads=torch.get_num_threads(),
        )
        out[f"k{size}_seconds"] = round(time.perf_counter() - t, 2)
    return {
        "steps": steps,
        **out,
        "ratio": round(out[f"k{k}_seconds"] / out["k1_seconds"], 2),
        "seconds_per_model": {"k1": out["k1_seconds"], f"k{k}": round(out[f"k{k}_seconds"] / k, 2)},
        "target_ratio": 3.0 if k == 8 else None,
    }


def worker(device: str, steps: int) -> None:
    """One training of ``steps`` steps; prints its wall seconds (imports excluded)."""
    t = time.perf_counter()
    train(
        TASK,
        ModelConfig.for_task(TASK),
        TrainConfig(device=device, steps=steps, eval_every=steps),
        progress=False,
        threads=torch.get_num_threads(),
    )
    print(json.dumps({"seconds": time.perf_counter() - t}))


def concurrency(device, steps: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(steps), "--device", str(device), "--threads", str(threads)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }

    def run(n: int) -> list[float]:
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
        return [json.loads(p.communicate()[0].strip().splitlines()[-1])["seconds"] for p in procs]

    alone = run(1)[0]
    both = run(2)
    return {
        "steps": steps,
        "alone_seconds": round(alone, 2),
        "concurrent_seconds": [round(s, 2) for s in both],
        "ratio": round(max(both) / alone, 2),
        "target_ratio": 1.3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="steps per timing round (step_ms)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3, help="seeds per recipe for the add3 times (median reported)")
    p.add_argument("--ensemble-steps", type=int, default=100)
    p.add_argument(
        "--ensemble-k", type=int, default=8, help="seeds of the ensemble timed against one (e.g. 64 on a GPU)"
    )
    p.add_argument("--concurrency-steps", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the toolkit's policy, 1)")
    p.add_argument("--batch-size", type=int, default=None, help="the 'default' recipe's batch (e.g. 512 on a GPU)")
    p.add_argument("--lr", type=float, default=None, help="the 'default' recipe's learning rate")
    p.add_argument("--warmup", type=int, default=None, help="the 'default' recipe's warmup steps")
    p.add_argument("--skip-study", action="store_true", help="skip the study's recipe (the slowest part)")
    p.add_argument("--skip-concurrency", action="store_true")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    threads = set_threads(args.threads)
    device = resolve_device(args.device)
    if args.worker is not None:
        return worker(str(device), args.worker)
    result = {
        "device": str(device),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average_1m_start": round(os.getloadavg()[0], 2),
    }
    result["step_ms"] = step_ms(device, args.steps, args.rounds)
    overrides = {
        k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("warmup", args.warmup)) if v is not None
    }
    result["add3_default_recipe"] = to_100pct(device, args.seeds, **overrides)
    if not args.skip_study:
        result["add3_study_recipe"] = to_100pct(device, args.seeds, **STUDY)
        default, study = result["add3_default_recipe"]["runs"], result["add3_study_recipe"]["runs"]
        result["speedup_default_over_study"] = {
            "median": round(
                result["add3_study_recipe"]["median_seconds"] / result["add3_default_recipe"]["median_seconds"], 2
            ),
            "per_seed": [round(s["seconds"] / d["seconds"], 2) for d, s in zip(default, study)],
            # what a device whose step costs the same at batch 64 and 128 (an overhead-bound GPU) would see
            "median_steps": round(
                result["add3_study_recipe"]["median_steps"] / result["add3_default_recipe"]["median_steps"], 2
            ),
        }
    result["add3_targets"] = {"seconds": 15, "speedup_over_study": 4}
    result["ensemble"] = ensemble_seconds(device, args.ensemble_steps, args.ensemble_k)
    if not args.skip_concurrency:
        result["concurrency"] = concurrency(device, args.concurrency_steps, threads)
    result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
