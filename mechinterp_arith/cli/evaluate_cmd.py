"""``mechinterp-arith evaluate``: exact match and per-digit accuracy, ID and OOD."""

from __future__ import annotations

from .common import (
    add_checkpoint_arg,
    add_device_arg,
    add_json_arg,
    add_quiet_arg,
    add_stop_below_arg,
    fmt,
    print_json,
    require_positive,
)


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy on held-out ID pairs and on longer (OOD) operands",
        description="Greedy exact match and per-digit accuracy (digit 0 = units). ID: the "
        "checkpoint's held-out test split; OOD: both operands exactly m digits.",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--ood-digits",
        type=int,
        nargs="*",
        default=None,
        metavar="M",
        help="OOD operand lengths (default: n+1 when the format holds it); lengths past the width are read "
        "in a wider format where the position scheme allows (coupling, abacus, rotary, nope, randomized)",
    )
    add_stop_below_arg(p)
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="pairs per set (default: the checkpoint's whole held-out split, e.g. 10,000 for add3; 10,000 OOD pairs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the OOD (and random ID) sets")
    p.add_argument(
        "--batch-size",
        type=int,
        default=4096,
        help="pairs decoded at a time: memory grows with it, not --n (default 4,096)",
    )
    add_json_arg(p)
    add_quiet_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="scoring {checkpoint}")


def run(args) -> int:
    from ..core.checkpoint import load
    from ..core.data import default_ood_digits
    from ..core.evaluate import evaluate_checkpoint

    ckpt = load(args.checkpoint, device=args.device)
    require_positive(args, "n")
    ood = args.ood_digits
    if ood is None:
        m = default_ood_digits(ckpt.task)
        ood = [m] if m is not None else []
    result = evaluate_checkpoint(
        ckpt,
        ood,
        n=args.n,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.quiet,
        stop_below=args.stop_below,
    )
    if args.json:
        print_json(result)
        return 0
    print(
        f"{result['checkpoint']}: {ckpt.task.describe()} ({ckpt.task.format} format), trained on "
        f"{ckpt.task.digits}-digit operands"
    )
    width = ckpt.task.answer_width
    print(f"{'set':<14}{'n':>8}{'exact':>9}  per digit (units first)")
    rows = [(f"ID {ckpt.task.digits}-digit", result["id"])] + [(f"OOD {m}-digit", r) for m, r in result["ood"].items()]
    for label, r in rows:
        digits = " ".join(f"{x:.3f}" for x in r["per_digit"][:width])
        print(f"{label:<14}{r['n']:>8}{fmt(r['exact']):>9}  {digits}")
    return 0
