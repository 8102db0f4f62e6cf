"""``mechinterp-arith train``: train a hooked model (or a seed ensemble) in place and write checkpoint directories."""

from __future__ import annotations

import argparse
import shlex

from ..core.ensemble import EnsembleResult
from ..core.model import ACTIVATIONS, POSITIONS, ModelConfig
from ..core.position_schemes import SCHEMES, scheme_defaults
from ..core.tasks import Task
from ..core.train import train
from ..core.train_command import MODEL_FLAGS, TRAIN_FLAGS, train_command
from ..core.train_config import BATCH_RNGS, FORWARDS, OFF, OPERAND_LENGTHS, TrainConfig
from .common import add_device_arg, add_task_args, fmt, require_positive, task_from_args

# settings some position scheme sets (core/position_schemes.SCHEME_DEFAULTS): their options default to
# None, resolved from --positional when training starts; their help lists the default of each scheme
SCHEME_MODEL = sorted({k for s in SCHEMES for k in scheme_defaults(s)["model"]})
SCHEME_TRAINING = sorted({k for s in SCHEMES for k in scheme_defaults(s)["training"]})
BY_SCHEME_DESTS = (
    {"format", "n_ctx"}
    | {MODEL_FLAGS[k][2:].replace("-", "_") for k in SCHEME_MODEL}
    | {TRAIN_FLAGS[k][2:].replace("-", "_") for k in SCHEME_TRAINING}
)
MODEL_DESTS = {"n_layers": "layers", "n_heads": "heads", "d_model": "d_model", "d_mlp": "d_mlp"}


class SchemeDefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every option but those whose default depends on --positional
    (their help lists it by scheme)."""

    def _get_help_string(self, action):
        return action.help if action.dest in BY_SCHEME_DESTS else super()._get_help_string(action)


def by_scheme(section: str, field: str, fallback) -> str:
    """The default of ``field`` (a ModelConfig or TrainConfig field, ``section`` "model" or
    "training"; "format") for each scheme, e.g. ``learned, rotary, nope, randomized: 3; abacus, coupling: 1``."""
    groups: dict[str, list[str]] = {}
    for scheme in SCHEMES:
        d = scheme_defaults(scheme)
        value = d[section] if section == "format" else d[section].get(field, fallback)
        groups.setdefault(str(value).lower() if isinstance(value, bool) else str(value), []).append(scheme)
    return "default by --positional: " + "; ".join(f"{', '.join(names)}: {v}" for v, names in groups.items())


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (or a seed ensemble) on an arithmetic task",
        description="Train a hooked transformer on n-digit arithmetic; resumable. With --seeds K, "
        "train K models (seeds 0..K-1: initialisation and batch order) as one batched "
        "computation into OUT/seed_S, plus OUT/ensemble.json.",
        formatter_class=SchemeDefaultsFormatter,
        epilog="Options marked 'default by --positional' take the position scheme's default when not "
        "given (learned: the study's gpt-nano setting; abacus and coupling: the models measured in "
        "docs/length_generalisation.md); the checkpoint and its recorded command hold the resolved values.",
    )
    t = p.add_argument_group("task")
    add_task_args(t)
    p.set_defaults(format=None)  # None: the position scheme's default format (paper; reversed for abacus, coupling)
    for action in t._group_actions:
        if action.dest == "format":
            action.help = "token format; " + by_scheme("format", "format", None)
    m = p.add_argument_group("model (defaults: minGPT gpt-nano, or the position scheme's)")
    nano = ModelConfig()
    m.add_argument("--layers", type=int, default=None, help=by_scheme("model", "n_layers", nano.n_layers))
    m.add_argument("--heads", type=int, default=None, help=by_scheme("model", "n_heads", nano.n_heads))
    m.add_argument("--d-model", type=int, default=None, help=by_scheme("model", "d_model", nano.d_model))
    m.add_argument(
        "--d-mlp",
        type=int,
        default=None,
        help="4 * --d-model when that is given, else " + by_scheme("model", "d_mlp", nano.d_mlp),
    )
    m.add_argument("--act", choices=ACTIVATIONS, default="gelu_new")
    m.add_argument(
        "--positional", choices=POSITIONS, default="learned", help="position scheme (docs/length_generalisation.md)"
    )
    m.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help="context and position-table rows; default by --positional: the example's length (learned, "
        "rotary, nope), 4x it (randomized), at least 2x the largest position ID (abacus, coupling)",
    )
    m.add_argument("--model-seed", type=int, default=None, help="initialisation seed (default 0)")
    o = p.add_argument_group("training")
    d = TrainConfig()
    o.add_argument("--steps", type=int, **scheme_option("steps", d.steps))
    o.add_argument("--batch-size", type=int, **scheme_option("batch_size", d.batch_size))
    o.add_argument("--lr", type=float, **scheme_option("lr", d.lr))
    o.add_argument("--weight-decay", type=float, **scheme_option("weight_decay", d.weight_decay))
    o.add_argument("--betas", type=float, nargs=2, default=d.betas, metavar=("B1", "B2"))
    o.add_argument("--warmup", type=int, **scheme_option("warmup", d.warmup))
    o.add_argument("--schedule", choices=("cosine", "constant"), default=d.schedule)
    o.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine floor, as a fraction of --lr")
    o.add_argument("--grad-clip", type=float, default=d.grad_clip)
    o.add_argument("--seed", type=int, default=None, help=f"batch order seed (default {d.seed})")
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
        help="training pairs (80%% of all pairs when fewer than 20,000 exist); "
        + by_scheme("training", "n_train", "10,000"),
    )
    o.add_argument("--n-test", type=int, default=None)
    o.add_argument(
        "--operand-lengths",
        choices=OPERAND_LENGTHS,
        default=None,
        help="mixed: each operand's digit count uniform in 1..n; " + by_scheme("training", "operand_lengths", None),
    )
    o.add_argument(
        "--random-positions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random position offsets (abacus, coupling) or subsets (randomized) while training; "
        + by_scheme("training", "random_positions", None),
    )
    o.add_argument("--eval-every", type=int, **scheme_option("eval_every", d.eval_every))
    o.add_argument(
        "--eval-n",
        type=int,
        **scheme_option("eval_n", d.eval_n, "held-out ID (and OOD) pairs scored at each evaluation"),
    )
    o.add_argument(
        "--ood-digits", type=int, default=None, help="OOD operand length scored while training (default n+1)"
    )
    o.add_argument("--target-accuracy", type=float, default=None, help="stop when held-out exact match reaches it")
    o.add_argument(
        "--anneal-at",
        type=number_or_off,
        default=d.anneal_at,
        help=f"with --target-accuracy: anneal the learning rate once the ID sample's exact match reaches "
        f"this (default {d.anneal_at}; {OFF}: never)",
    )
    o.add_argument("--anneal-steps", type=int, default=d.anneal_steps, help="steps the annealing takes")
    o.add_argument("--snapshot-every", type=int, default=None, help="keep weights every K steps")
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
    p.set_defaults(func=run)


def scheme_option(field: str, fallback, help: str | None = None) -> dict:
    """``default=`` and ``help=`` of a TrainConfig option: None and the per-scheme defaults when some
    scheme sets ``field``, else ``fallback`` (the class default)."""
    if field not in SCHEME_TRAINING:
        return {"default": fallback, **({"help": help} if help else {})}
    return {"default": None, "help": (help + "; " if help else "") + by_scheme("training", field, fallback)}


def resolved_configs(args) -> tuple[Task, ModelConfig, TrainConfig]:
    """The task, model and training configs of parsed ``train`` options: the options given, the
    position scheme's defaults for the others (core/position_schemes.scheme_defaults), then the
    classes' defaults."""
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


def number_or_off(text: str) -> float | None:
    """A number, or None for ``off`` (train_config.OFF)."""
    if text == OFF:
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {OFF}, got {text!r}") from None


def run(args) -> int:
    require_positive(args, "seeds")
    if args.seeds is not None and (args.model_seed is not None or args.seed is not None):
        raise ValueError("--seeds K sets each model's --model-seed and --seed to 0..K-1; pass either --seeds or those")
    task, mcfg, tcfg = resolved_configs(args)
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    # one model records the command with every setting resolved (it reproduces the run whatever later
    # defaults are); an ensemble records that of each member and, in ensemble.json, the command as typed
    command = "mechinterp-arith " + shlex.join(args.argv) if seeds else train_command(task, mcfg, tcfg, args.out)
    result = train(
        task,
        mcfg,
        tcfg,
        out_dir=args.out,
        resume=not args.no_resume,
        command=command,
        progress=not args.quiet,
        overwrite=args.overwrite,
        seeds=seeds,
        threads=args.threads,
    )
    if isinstance(result, EnsembleResult):
        summary = result.summary()
        for _, row in summary.iterrows():
            print(
                f"  seed {int(row['seed']):>3}: step {int(row['step'])}, held-out ID exact "
                f"{fmt(row.get('held_out_exact', float('nan')))}, OOD exact {fmt(row.get('ood_exact', float('nan')))}"
            )
        print(f"wrote {args.out}/seed_0..{args.seeds - 1} and {args.out}/ensemble.json")
        return 0
    last = result.history.iloc[-1]
    print(
        f"wrote {args.out}: step {int(last['step'])}, loss {fmt(last['loss'])}, "
        f"held-out ID exact {fmt(last.get('held_out_exact', last['id_exact']))}, "
        f"OOD exact {fmt(last.get('ood_exact', float('nan')))}"
    )
    return 0
