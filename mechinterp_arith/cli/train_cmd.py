"""``mechinterp-arith train``: train a hooked model (or a seed ensemble) in place and write checkpoint directories."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.choices import ACTIVATIONS, SCHEMES
from ..core.scheme_defaults import GPT_NANO, scheme_defaults  # torch-free
from ..core.train_config import BATCH_RNGS, FORWARDS, OFF, TrainConfig  # torch-free
from .common import add_device_arg, add_task_args, fmt, require_positive, task_from_args

if TYPE_CHECKING:
    from ..core.model import ModelConfig
    from ..core.tasks import Task

# settings some position scheme sets (core/scheme_defaults.py): their options default to None, resolved
# from --positional when training starts; their help lists the default of each scheme
SCHEME_MODEL = sorted({k for s in SCHEMES for k in scheme_defaults(s)["model"]})
SCHEME_TRAINING = sorted({k for s in SCHEMES for k in scheme_defaults(s)["training"]})
MODEL_DESTS = {"n_layers": "layers", "n_heads": "heads", "d_model": "d_model", "d_mlp": "d_mlp"}  # field: option


def by_scheme(section: str, field: str, fallback: object) -> str:
    """The default of ``field`` (a ModelConfig or TrainConfig field, ``section`` "model" or
    "training"; or "format") for each scheme, e.g. ``learned, rotary, nope, randomized: 3; abacus, coupling: 1``."""
    groups: dict[str, list[str]] = {}
    for scheme in SCHEMES:
        d = scheme_defaults(scheme)
        value = d[section] if section == "format" else d[section].get(field, fallback)
        shown = (
            str(value).lower() if isinstance(value, bool) else f"{value:,}" if isinstance(value, int) else str(value)
        )
        groups.setdefault(shown, []).append(scheme)
    return "default by --positional: " + "; ".join(f"{', '.join(names)}: {v}" for v, names in groups.items())


def scheme_option(section: str, field: str, fallback: object, help: str) -> dict:
    """``default=`` and ``help=`` of a ModelConfig or TrainConfig option: None and the default of each
    scheme when they differ, else ``fallback`` (the class default, which the help formatter shows)."""
    values = {repr(scheme_defaults(s)[section].get(field, fallback)) for s in SCHEMES}
    if len(values) == 1:  # the same for every scheme
        return {"default": fallback, "help": help}
    return {"default": None, "help": f"{help}; {by_scheme(section, field, fallback)}"}


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (or a seed ensemble) on an arithmetic task",
        description="Train a hooked transformer on n-digit arithmetic; resumable. With --seeds K, "
        "train K models (seeds 0..K-1: initialisation and batch order) as one batched "
        "computation into OUT/seed_S, plus OUT/ensemble.json.",
        epilog="Options whose help says 'default by --positional' take the position scheme's default when "
        "not given (learned, rotary, nope, randomized: the study's gpt-nano setting; abacus and coupling: the "
        "models measured in docs/length_generalisation.md); the checkpoint and its recorded command hold the "
        "resolved values.",
    )
    t = p.add_argument_group("task")
    add_task_args(t, format_help="token format; " + by_scheme("format", "format", None))
    p.set_defaults(format=None)  # None: the position scheme's default format
    m = p.add_argument_group("model (defaults: minGPT gpt-nano, or the position scheme's)")
    nano = GPT_NANO
    m.add_argument("--layers", type=int, **scheme_option("model", "n_layers", nano["n_layers"], "transformer blocks"))
    m.add_argument(
        "--heads", type=int, **scheme_option("model", "n_heads", nano["n_heads"], "attention heads per block")
    )
    m.add_argument("--d-model", type=int, **scheme_option("model", "d_model", nano["d_model"], "residual stream width"))
    m.add_argument(
        "--d-mlp",
        type=int,
        default=None,
        help="MLP width: 4 x --d-model when that is given, else " + by_scheme("model", "d_mlp", nano["d_mlp"]),
    )
    m.add_argument("--act", choices=ACTIVATIONS, default="gelu_new", help="MLP activation")
    m.add_argument(
        "--positional", choices=SCHEMES, default="learned", help="position scheme (docs/length_generalisation.md)"
    )
    m.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help="context and position-table rows; default by --positional: the example's length (learned, "
        "rotary, nope), 4x it (randomized), at least 2x the largest position ID (abacus, coupling)",
    )
    m.add_argument("--model-seed", type=int, default=None, help="initialisation seed (default: 0)")
    o = p.add_argument_group("training (the default recipe: docs/training.md)")
    d = TrainConfig()
    o.add_argument(
        "--steps",
        type=int,
        **scheme_option(
            "training",
            "steps",
            d.steps,
            "training steps: the most it trains and the cosine horizon (with --target-accuracy it stops earlier)",
        ),
    )
    o.add_argument(
        "--batch-size", type=int, **scheme_option("training", "batch_size", d.batch_size, "training pairs per step")
    )
    o.add_argument("--lr", type=float, **scheme_option("training", "lr", d.lr, "peak learning rate (AdamW)"))
    o.add_argument(
        "--weight-decay", type=float, **scheme_option("training", "weight_decay", d.weight_decay, "AdamW weight decay")
    )
    o.add_argument("--betas", type=float, nargs=2, default=d.betas, metavar=("B1", "B2"), help="AdamW betas")
    o.add_argument(
        "--warmup", type=int, **scheme_option("training", "warmup", d.warmup, "linear learning-rate warmup steps")
    )
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
        "--n-train",
        type=int,
        default=None,
        help="training pairs (80%% of all pairs when fewer exist); " + by_scheme("training", "n_train", "10,000"),
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
        "either:L-N, both:L-N: equal shares of lengths L..N, N = --digits; "
        + by_scheme("training", "operand_lengths", None),
    )
    switches = {  # on/off options whose default is the scheme's (None: resolved when training starts)
        "random_positions": ("random position offsets (abacus, coupling) or subsets (randomized) while training", None),
        "distractors": (
            "abacus, coupling: while training, a share of the hidden zero padding becomes random digits at "
            "position IDs outside the example's (visible; no loss on them)",
            False,
        ),
        "end_token_loss": (
            "train the fixed-length formats' end token, which decoding never generates (unpadded formats always do)",
            True,
        ),
    }
    for field, (text, fallback) in switches.items():
        o.add_argument(
            "--" + field.replace("_", "-"),
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{text}; {by_scheme('training', field, fallback)}",
        )
    o.add_argument(
        "--eval-every",
        type=int,
        **scheme_option("training", "eval_every", d.eval_every, "steps between evaluations (and saved states)"),
    )
    o.add_argument(
        "--eval-n",
        type=int,
        **scheme_option("training", "eval_n", d.eval_n, "held-out ID (and OOD) pairs scored at each evaluation"),
    )
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


def resolved_configs(args) -> tuple[Task, ModelConfig, TrainConfig]:
    """The task, model and training configs of parsed ``train`` options: the options given, the
    position scheme's defaults for the others (core/scheme_defaults.py), then the classes' defaults."""
    from ..core.model import ModelConfig
    from ..core.train_command import TRAIN_FLAGS

    fmt_default = scheme_defaults(args.positional)["format"]
    task = task_from_args(argparse.Namespace(**{**vars(args), "format": args.format or fmt_default}))
    architecture = {f: getattr(args, dest) for f, dest in MODEL_DESTS.items() if getattr(args, dest) is not None}
    if args.d_mlp is None and args.d_model is not None:
        architecture["d_mlp"] = 4 * args.d_model
    mcfg = ModelConfig.for_task(
        task,
        **architecture,
        act_fn=args.act,
        positional=args.positional,
        seed=args.model_seed or 0,
        **({"n_ctx": args.n_ctx} if args.n_ctx is not None else {}),
    )
    settings = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in TRAIN_FLAGS.items()}
    settings.update(betas=tuple(args.betas), seed=args.seed or 0)
    for field in SCHEME_TRAINING:
        if settings[field] is None:  # not given: the scheme's
            del settings[field]
    return task, mcfg, TrainConfig.for_scheme(args.positional, **settings)


def run(args) -> int:
    from ..core.train import train
    from ..core.train_command import train_command
    from ..core.train_loop import TrainResult

    require_positive(args, "seeds")
    if args.seeds is not None and (args.model_seed is not None or args.seed is not None):
        raise ValueError("--seeds K sets each model's --model-seed and --seed to 0..K-1; pass either --seeds or those")
    task, mcfg, tcfg = resolved_configs(args)
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    # one model records the command with every setting resolved (it reproduces the run whatever later
    # defaults are); an ensemble records that of each member and, in ensemble.json, the command as typed
    command = "mechinterp-arith " + shlex.join(args.argv) if seeds else train_command(task, mcfg, tcfg, args.out)
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
