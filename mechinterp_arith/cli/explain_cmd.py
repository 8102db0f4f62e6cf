"""``mechinterp-arith explain``: one input's prediction, ID representative and top sites per digit."""

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
        "explain",
        help="explain one input: prediction, ID representative, top sites per answer digit",
        description="Patches edits of the operands' ID digits that change one answer digit of the "
        "model's own answer, and lists the sites that carry each digit.",
    )
    add_checkpoint_arg(p)
    p.add_argument("a", type=int, metavar="A")
    p.add_argument("b", type=int, metavar="B")
    p.add_argument("--top", type=int, default=3, help="sites per digit (default 3)")
    add_json_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="explaining {a} and {b} on {checkpoint}")


def run(args) -> int:
    from ..analysis.circuits import explain
    from ..core.checkpoint import load

    ckpt = load(args.checkpoint, device=args.device)
    require_positive(args, "top")
    result = explain(ckpt, args.a, args.b, top=args.top)
    if args.json:
        print_json(result)
        return 0
    rep = result["id_representative"]
    print(
        f"{args.a} {ckpt.task.symbol} {args.b}: model {result['prediction']}, true {result['true_answer']} "
        f"({'correct' if result['correct'] else 'wrong'}; {'ID' if result['in_distribution'] else 'OOD'})"
    )
    print(f"ID representative {rep['a']} {ckpt.task.symbol} {rep['b']}: model {rep['prediction']}")
    for d in result["digits"]:
        head = f"digit {d['k']}: predicted {d['predicted']} (true {d['true']})"
        if not d["top_sites"]:
            print(f"{head}: {d.get('note', '')}")
            continue
        sites = ", ".join(f"{s['kind']} L{s['layer']} {s['label']} {s['effect']:.2f}" for s in d["top_sites"])
        print(f"{head}, {d['n_corruptions']} corruptions: {sites}")
    return 0
