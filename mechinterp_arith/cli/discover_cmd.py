"""``mechinterp-arith discover``: find each answer digit's circuit (edges of TL's graph) and verify it exactly."""

from __future__ import annotations

import time

from .common import add_checkpoint_arg, add_device_arg, add_json_arg, add_quiet_arg, print_json, require_positive


def register(sub) -> None:
    p = sub.add_parser(
        "discover",
        help="automatic circuit discovery (EAP-IG ranking, exact faithfulness)",
        description="Rank every edge of TransformerLens's attribution-patching graph by EAP-IG on pairs "
        "whose answers differ only in digit k, keep the smallest top-ranked edge set whose "
        "exact ablation (every other edge set to the corrupted run) recovers --target of "
        "the logit-difference gap, and verify it on held-out pairs. --json prints TL Node "
        "fields for every edge (docs/circuits.md).",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--digit",
        type=int,
        default=None,
        metavar="K",
        help="answer digit (0 = units; default: every digit 0..n the task can change alone)",
    )
    p.add_argument(
        "--operand-digits",
        type=int,
        default=None,
        metavar="M",
        help="pairs of M-digit operands, up to the format's width (may exceed the trained length; default: ID pairs)",
    )
    p.add_argument("--n", type=int, default=48, help="search pairs (default 48)")
    p.add_argument("--heldout", type=int, default=256, help="held-out pairs that verify the circuit (default 256)")
    p.add_argument("--ig-steps", type=int, default=5, help="EAP-IG path steps; 1 = plain EAP (default 5)")
    p.add_argument(
        "--target", type=float, default=0.95, help="faithfulness the search asks on its pairs (default 0.95)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="edges to print per digit without --json (default 10)")
    add_json_arg(p)
    add_quiet_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="discovering the circuits of {checkpoint}")


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..analysis.circuits import circuit_digits
    from ..analysis.discovery import discover
    from ..analysis.edge_graph import node_label
    from ..core.checkpoint import load
    from ..core.errors import NotApplicable
    from ..core.positions import check_digit

    t0 = time.perf_counter()
    require_positive(args, "n", "heldout", "ig_steps", "top")
    if args.operand_digits is not None:
        require_positive(args, "operand_digits")
    if not 0 < args.target <= 1:
        raise ValueError(f"--target must be in (0, 1], got {args.target}")
    ckpt = load(args.checkpoint, device=args.device)
    task = ckpt.task
    digits = circuit_digits(task) if args.digit is None else [check_digit(task, args.digit)]
    circuits, skipped = [], {}
    for k in tqdm(digits, desc=f"discover {ckpt.name}", unit="digit", disable=True if args.quiet else None):
        try:
            circuits.append(
                discover(
                    ckpt,
                    k,
                    n=args.n,
                    n_heldout=args.heldout,
                    seed=args.seed,
                    ig_steps=args.ig_steps,
                    target=args.target,
                    operand_digits=args.operand_digits,
                )
            )
        except NotApplicable as e:
            if args.digit is not None:
                raise ValueError(str(e)) from None
            skipped[str(k)] = str(e)
    if args.json:
        if args.digit is not None:
            print_json(circuits[0].to_json())
        else:
            print_json(
                {
                    "checkpoint": str(ckpt.path) if ckpt.path else ckpt.name,
                    "task": task.name,
                    "operand_digits": args.operand_digits,
                    "circuits": [c.to_json() for c in circuits],
                    "skipped": skipped,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
        return 0
    lengths = "ID operands" if args.operand_digits is None else f"{args.operand_digits}-digit operands"
    print(
        f"{ckpt.name}: {task.describe()}; {lengths}; edges of TL's graph: {circuits[0].n_edges_total if circuits else '-'}"
    )
    for c in circuits:
        lo, hi = c.faithfulness_ci95
        print(
            f"\nanswer digit {c.digit}: {c.n_edges} edges ({100 * c.n_edges / c.n_edges_total:.1f}%), faithfulness "
            f"{c.faithfulness:.3f} [{lo:.3f}, {hi:.3f}] on {c.pairs} held-out pairs, digit kept on "
            f"{100 * c.agreement:.1f}%, {c.seconds:.1f} s; MIB cpr {c.cpr:.3f}, cmd {c.cmd:.3f} (random ranking: "
            f"cpr {c.metrics['random']['cpr']:.3f}, cmd {c.metrics['random']['cmd']:.3f})"
        )
        for w, r, s in c.edges()[: args.top]:
            print(f"  {node_label(w):<10} -> {node_label(r):<12} score {s:+.3f}")
    for digit, why in skipped.items():
        print(f"\nanswer digit {digit}: skipped ({why})")
    return 0
