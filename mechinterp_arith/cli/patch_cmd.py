"""``mechinterp-arith patch``: which sites and heads carry each answer digit (activation patching)."""

from __future__ import annotations

from .common import (
    add_checkpoint_arg,
    add_device_arg,
    add_json_arg,
    print_json,
    require_positive,
)


def register(sub) -> None:
    p = sub.add_parser(
        "patch",
        help="activation patching: sites and heads that carry each answer digit",
        description="Batched activation patching with pairs whose answers differ only in digit k "
        "(metric: logit difference at answer position k; effect 1 = clean restored). "
        "Reports the top (kind, layer, position) sites and the heads that move operand "
        "digits into the answer.",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--digit", type=int, default=None, metavar="K", help="answer digit (0 = units; default: every digit 0..n)"
    )
    p.add_argument("--n", type=int, default=64, help="pairs per digit (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=5, help="sites per digit to report (default 5)")
    p.add_argument("--min-effect", type=float, default=0.1, help="heads reported when best effect >= this")
    add_json_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="patching {checkpoint}")


def run(args) -> int:
    from ..analysis.circuits import circuit_digits, digit_sites, head_operand_map
    from ..core.checkpoint import load
    from ..core.errors import NotApplicable
    from ..core.positions import answer_logit_pos, check_digit

    ckpt = load(args.checkpoint, device=args.device)
    task = ckpt.task
    require_positive(args, "n", "top")
    digits = circuit_digits(task) if args.digit is None else [check_digit(task, args.digit)]
    result = {
        "checkpoint": str(ckpt.path) if ckpt.path else ckpt.name,
        "task": task.name,
        "n_pairs": args.n,
        "seed": args.seed,
        "digits": {},
    }
    for k in digits:
        try:
            sites = digit_sites(ckpt, k, n=args.n, seed=args.seed)
            heads = head_operand_map(ckpt, k, n=args.n, seed=args.seed)
        except NotApplicable as e:
            if args.digit is not None:
                raise
            result["digits"][str(k)] = {"logit_pos": answer_logit_pos(task, k), "skipped": str(e)}
            continue
        top = sites[~sites.identical].nlargest(args.top, "effect")
        strong = heads[heads.best_effect >= args.min_effect].sort_values("best_effect", ascending=False)
        result["digits"][str(k)] = {
            "logit_pos": answer_logit_pos(task, k),
            "clean_logit_diff": round(sites.attrs["clean_logit_diff"], 4),
            "corrupted_logit_diff": round(sites.attrs["corrupted_logit_diff"], 4),
            "n_identical_sites": int(sites.identical.sum()),
            "top_sites": [
                {
                    "kind": r["kind"],
                    "layer": int(r["layer"]),
                    "pos": int(r["pos"]),
                    "label": r["label"],
                    "effect": round(float(r["effect"]), 4),
                }
                for r in top.to_dict("records")
            ],
            "heads": [
                {
                    "layer": int(r.layer),
                    "head": int(r.head),
                    "operand": r.operand,
                    "place": int(r.place),
                    "at": r.best_label,
                    "effect": round(float(r.best_effect), 4),
                    "attention": round(float(r.attention_at_best), 4),
                }
                for r in strong.itertuples()
            ],
        }
    if args.json:
        print_json(result)
        return 0
    print(f"{result['checkpoint']}: {task.describe()}, {args.n} pairs per digit (effect: 1 = clean restored)")
    for k, d in result["digits"].items():
        if "skipped" in d:
            print(f"\nanswer digit {k}: skipped ({d['skipped']})")
            continue
        print(
            f"\nanswer digit {k}: logit diff clean {d['clean_logit_diff']:.2f}, corrupted {d['corrupted_logit_diff']:.2f}"
        )
        for s in d["top_sites"]:
            print(f"  {s['kind']:<10} L{s['layer']} pos {s['pos']:>2} ({s['label']:<4})  effect {s['effect']:.3f}")
        for h in d["heads"]:
            print(
                f"  head L{h['layer']}H{h['head']} moves {h['operand']}{h['place']} at {h['at']:<4} "
                f"effect {h['effect']:.3f}, attention {h['attention']:.2f}"
            )
    return 0
