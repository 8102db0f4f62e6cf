"""``mechinterp-arith train``: train a hooked model (or a seed ensemble) in place and write checkpoint directories."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..core.choices import ACTIVATIONS, SCHEMES
from ..core.train_config import BATCH_RNGS, FORWARDS, OFF, TrainConfig  # torch-free
from .common import add_device_arg, add_task_args, fmt, require_positive, task_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (or a seed ensemble) on an arithmetic task",
        description="Train a hooked transformer on n-digit arithmetic; resumable. With --seeds K, "
        "train K models (seeds 0..K-1: initialisation and batch order) as one batched "
        "computation into OUT/seed_S, plus OUT/ensemble.json.",
    )
    t = p.add_argument_group("task")
    add_task_args(
        t, format_help="token format (default: the position scheme's: reversed for abacus and coupling, else paper)"
    )
    p.set_defaults(format=None)  # None: the position scheme's default format
    m = p.add_argument_group("model (defaults: minGPT gpt-nano)")
    m.add_argument("--layers", type=int, default=3, help="transformer blocks")
    m.add_argument("--heads", type=int, default=3, help="attention heads per block")
    m.add_argument("--d-model", type=int, default=48, help="residual stream width")
    m.add_argument("--d-mlp", type=int, default=None, help="MLP width (default: 4 x --d-model)")
    m.add_argument("--act", choices=ACTIVATIONS, default="gelu_new", help="MLP activation")
    m.add_argument(
        "--positional", choices=SCHEMES, default="learned", help="position scheme (docs/length_generalisation.md)"
    )
    m.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help="context and position-table rows (default: the scheme's, e.g. 2x the largest coupled ID)",
    )
    m.add_argument("--model-seed", type=int, default=None, help="initialisation seed (default: 0)")
    o = p.add_argument_group("training (the default recipe: docs/training.md)")
    d = TrainConfig()
    o.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help="training steps: the most it trains and the cosine horizon (with --target-accuracy it stops earlier)",
    )
    o.add_argument("--batch-size", type=int, default=d.batch_size, help="training pairs per step")
    o.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    o.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    o.add_argument("--betas", type=float, nargs=2, default=d.betas, metavar=("B1", "B2"), help="AdamW betas")
    o.add_argument("--warmup", type=int, default=d.warmup, help="linear learning-rate warmup steps")
    o.add_argument(
        "--schedule", choices=("cosine", "constant"), default=d.schedule, help="learning rate after the warmup"
    )
    o.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine floor, as a fraction of --lr")
    o.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip")
    o.add_argument("--seed", type=int, default=None, help=f"batch order seed (default: {d.seed})")
    o.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="K",
        help="train K models, seeds 0..K-1 (each sets --model-seed and --seed), in one process",
    )
    o.add_argument(
        "--batch-rng",
        choices=BATCH_RNGS,
        default=d.batch_rng,
        help="how the batch order derives from --seed (arithmetic: version 0.1.0's, which trained "
        "the shipped checkpoints)",
    )
    o.add_argument("--data-seed", type=int, default=d.data_seed, help="train/test split seed")
    o.add_argument(
        "--n-train", type=int, default=None, help="training pairs (default: 10,000; 80%% of all pairs when fewer)"
    )
    o.add_argument(
        "--n-test", type=int, default=None, help="held-out test pairs (default: 10,000; the other 20%% when fewer)"
    )
    o.add_argument(
        "--operand-lengths",
        default=None,
        metavar="SET",
        help="uniform: pairs below 10^n; mixed: each operand's digit count uniform in 1..n; the follow-up's "
        "sets (docs/follow_up.md): either: the longer operand has exactly n digits; both: both have n; "
        "either:L-N, both:L-N: equal shares of lengths L..N, N = --digits (default: mixed for abacus and "
        "coupling, else uniform)",
    )
    o.add_argument(
        "--random-positions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random position offsets (abacus, coupling) or subsets (randomized) while training "
        "(default: on for those schemes)",
    )
    o.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between evaluations (and saved states)")
    o.add_argument("--eval-n", type=int, default=d.eval_n, help="held-out ID (and OOD) pairs scored at each evaluation")
    o.add_argument(
        "--ood-digits", type=int, default=None, help="OOD operand length scored while training (default: n+1)"
    )
    o.add_argument("--target-accuracy", type=float, default=None, help="stop when held-out exact match reaches it")
    o.add_argument(
        "--anneal-at",
        type=number_or_off,
        default=d.anneal_at,
        help=f"with --target-accuracy: anneal the learning rate once the ID sample's exact match reaches "
        f"this ({OFF}: never)",
    )
    o.add_argument("--anneal-steps", type=int, default=d.anneal_steps, help="steps the annealing takes")
    o.add_argument("--snapshot-every", type=int, default=None, help="keep weights every K steps (default: none kept)")
    o.add_argument(
        "--forward",
        choices=FORWARDS,
        default=d.forward,
        help="forward of training steps: plain (fast, batched; the same function to float rounding), "
        "bridge (the hooked bridge's own: version 0.1.0's, which trained the shipped checkpoints), "
        "auto (plain when the architecture allows)",
    )
    o.add_argument("--out", required=True, help="checkpoint directory to write (resumed if interrupted)")
    o.add_argument("--no-resume", action="store_true", help="start over even if --out holds an interrupted run")
    o.add_argument("--overwrite", action="store_true", help="replace a finished checkpoint in --out")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_arg(p)
    p.set_defaults(func=run, start="training into {out}")


def number_or_off(text: str) -> float | None:
    """A number, or None for ``off`` (train_config.OFF)."""
    if text == OFF:
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {OFF}, got {text!r}") from None


def run(args) -> int:
    from ..core.model import ModelConfig
    from ..core.position_schemes import scheme_defaults
    from ..core.train import train
    from ..core.train_loop import TrainResult

    if args.format is None:
        args.format = scheme_defaults(args.positional)["format"]
    task = task_from_args(args)
    require_positive(args, "seeds")
    if args.seeds is not None and (args.model_seed is not None or args.seed is not None):
        raise ValueError("--seeds K sets each model's --model-seed and --seed to 0..K-1; pass either --seeds or those")
    mcfg = ModelConfig.for_task(
        task,
        n_layers=args.layers,
        n_heads=args.heads,
        d_model=args.d_model,
        d_mlp=args.d_mlp or 4 * args.d_model,
        act_fn=args.act,
        positional=args.positional,
        seed=args.model_seed or 0,
        **({"n_ctx": args.n_ctx} if args.n_ctx is not None else {}),
    )
    tcfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        betas=tuple(args.betas),
        warmup=args.warmup,
        schedule=args.schedule,
        min_lr_ratio=args.min_lr_ratio,
        grad_clip=args.grad_clip,
        seed=args.seed or 0,
        data_seed=args.data_seed,
        n_train=args.n_train,
        n_test=args.n_test,
        eval_every=args.eval_every,
        eval_n=args.eval_n,
        ood_digits=args.ood_digits,
        target_accuracy=args.target_accuracy,
        anneal_at=args.anneal_at,
        anneal_steps=args.anneal_steps,
        snapshot_every=args.snapshot_every,
        device=args.device,
        batch_rng=args.batch_rng,
        forward=args.forward,
        operand_lengths=args.operand_lengths,
        random_positions=args.random_positions,
    )
    command = "mechinterp-arith " + shlex.join(args.argv)
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    outs = [Path(args.out)] if seeds is None else [Path(args.out) / f"seed_{s}" for s in seeds]
    before = [written_at(out) for out in outs]
    options = dict(
        out_dir=args.out,
        resume=not args.no_resume,
        command=command,
        progress=not args.quiet,
        overwrite=args.overwrite,
        threads=args.threads,
    )
    if seeds is not None:
        from ..core.ensemble import train_ensemble

        summary = train_ensemble(task, mcfg, tcfg, seeds, **options).summary()
        for _, row in summary.iterrows():
            print(
                f"  seed {int(row['seed']):>3}: step {int(row['step'])}, held-out ID exact "
                f"{fmt(row.get('held_out_exact', float('nan')))}, OOD exact {fmt(row.get('ood_exact', float('nan')))}"
            )
        kept = sum(b is not None and b == written_at(out) for b, out in zip(before, outs))
        print(
            f"wrote {args.out}/seed_0..{args.seeds - 1} and {args.out}/ensemble.json"
            + (f" ({kept} of {args.seeds} were already finished there: kept, not retrained)" if kept else "")
        )
        return 0
    result = train(task, mcfg, tcfg, **options)
    assert isinstance(result, TrainResult)  # one model: no seeds given
    last = result.history.iloc[-1]
    if before[0] is not None and before[0] == written_at(outs[0]):
        verb = "nothing to train: kept the finished checkpoint in"
        hint = " (--overwrite trains it again)"
    else:
        verb, hint = "wrote", ""
    print(
        f"{verb} {args.out}: step {int(last['step'])}, loss {fmt(last['loss'])}, "
        f"held-out ID exact {fmt(last.get('held_out_exact', last['id_exact']))}, "
        f"OOD exact {fmt(last.get('ood_exact', float('nan')))}{hint}"
    )
    return 0


def written_at(out: Path) -> tuple[int, int] | None:
    """Identity of the finished checkpoint in ``out`` (inode and mtime of its config.json), None
    when there is none: equal before and after training means nothing was written."""
    try:
        st = (out / "config.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns
