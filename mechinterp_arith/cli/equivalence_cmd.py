"""``mechinterp-arith equivalence``: which ID relation explains the model's OOD answers; with
``--lengths``, the relation by operand length (docs/follow_up.md)."""

from __future__ import annotations

import argparse

from ..analysis.choices import FIT_THRESHOLD
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
        "equivalence",
        help="find the ID relation (e.g. (a mod 10^3) + (b mod 10^3)) behind OOD answers",
        description="For OOD sets (both operands m digits; one operand m digits, the other ID) test candidate "
        "relations output == f(a mod 10^j, b mod 10^j), output == true answer mod 10^j and the true "
        "answer; report each one's coverage (share of outputs exactly equal) with a 95% Wilson "
        f"interval, the best one (it fits only if its interval lies above {FIT_THRESHOLD}), "
        "consistency with the ID representative (a mod 10^n, b mod 10^n) and per-digit accuracy.",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--ood-digits",
        type=int,
        nargs="+",
        default=None,
        metavar="M",
        help="OOD operand lengths m, n < m <= W (default: n+1)",
    )
    p.add_argument("--n", type=int, default=10_000, help="pairs per OOD set (default 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the OOD sets")
    p.add_argument("--no-one-longer", action="store_true", help="skip the one-operand-longer sets")
    p.add_argument(
        "--lengths",
        type=length_list,
        default=None,
        metavar="L-N",
        help="relation by length instead: for each operand length (e.g. 1-9, or 1,3,5) exact match, the truncated "
        "relation's coverage and the best relation, each with a 95%% Wilson interval; lengths past the width "
        "are read in a wider format where the position scheme allows (e.g. coupling at width 20: up to 60)",
    )
    add_stop_below_arg(p)
    p.add_argument(
        "--operands",
        choices=("both", "either"),
        default="both",
        help="with --lengths: both operands of exactly m digits, or the longer one (the follow-up's addition sets)",
    )
    p.add_argument(
        "--relations",
        type=int,
        default=None,
        metavar="K",
        help="list only the K best relations per set in --json (default: all)",
    )
    add_json_arg(p)
    add_quiet_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="testing relations on {checkpoint}")


def length_list(text: str) -> list[int]:
    """Operand lengths from ``L-N`` (L..N) or ``a,b,c``."""
    try:
        if "-" in text:
            low, high = (int(x) for x in text.split("-"))
            return list(range(low, high + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected lengths as L-N or a,b,c (e.g. 1-9), got {text!r}") from None


def run(args) -> int:
    from ..analysis.equivalence import analyse_checkpoint, report_dict
    from ..core.checkpoint import load

    require_positive(args, "n")
    if args.lengths is not None:
        return run_by_length(args)
    ckpt = load(args.checkpoint, device=args.device)
    results = analyse_checkpoint(
        ckpt, args.ood_digits, n=args.n, seed=args.seed, one_longer=not args.no_one_longer, progress=not args.quiet
    )
    if args.json:
        print_json(report_dict(ckpt, results, args.relations))
        return 0
    task = ckpt.task
    print(f"{ckpt.name}: {task.describe()} ({task.format} format), trained on {task.digits}-digit operands")
    print(f"{'set':<16}{'n':>7}{'exact':>8}{'consist':>9}  {'coverage [95% CI]':<26}relation")
    for sets in results.values():
        for r in sets.values():
            top = r.search.top
            lo, hi = top.ci95
            name = top.name if r.search.fits else f"no relation fits (best: {top.name})"
            print(
                f"{r.label:<16}{r.n:>7}{fmt(r.exact):>8}{fmt(r.consistency):>9}  "
                f"{fmt(top.coverage)} [{fmt(lo)}, {fmt(hi)}]  {name}"
            )
    print("\nper-digit accuracy (units first) against the true / the equivalent answer f(a mod 10^n, b mod 10^n):")
    for sets in results.values():
        for r in sets.values():
            t = " ".join(f"{x:.3f}" for x in r.per_digit["true"])
            e = " ".join(f"{x:.3f}" for x in r.per_digit["equivalent"])
            print(f"  {r.label:<16} true  {t}\n  {'':<16} equiv {e}")
    return 0


def run_by_length(args) -> int:
    """``--lengths``: one row per operand length (analysis.relation_by_length)."""
    from ..analysis.relation_by_length import by_length_dict, check_lengths, relation_by_length
    from ..core.checkpoint import load

    if args.ood_digits is not None:
        raise ValueError("give --lengths or --ood-digits, not both")
    ckpt = load(args.checkpoint, device=args.device)
    lengths = check_lengths(ckpt.task, args.lengths, ckpt.model_config)  # before any work
    table = relation_by_length(
        ckpt, lengths, n=args.n, seed=args.seed, operands=args.operands, stop_below=args.stop_below
    )
    if args.json:
        print_json(by_length_dict(ckpt, table))
        return 0
    task = ckpt.task
    which = "both operands" if args.operands == "both" else "the longer operand"
    print(f"{ckpt.name}: {task.describe()} ({task.format} format), trained on {task.digits}-digit operands")
    print(f"sets: {which} of exactly m digits; truncated relation: {table.attrs['truncated_relation']}")
    print(f"{'m':>3}{'n':>8}  {'exact [95% CI]':<26}{'truncated [95% CI]':<26}best relation, coverage [95% CI]")
    for m, r in table.iterrows():
        n = f"{int(r['n'])}{'*' if r['exhaustive'] else ''}"
        cells = [
            f"{fmt(r[k])} [{fmt(r[k + '_lo'])}, {fmt(r[k + '_hi'])}]" for k in ("exact", "truncated", "best_coverage")
        ]
        best = r["best"] if r["fits"] else f"no relation fits (best: {r['best']})"
        print(f"{m:>3}{n:>8}  {cells[0]:<26}{cells[1]:<26}{best}, {cells[2]}")
    print("* every pair of that length")
    return 0
