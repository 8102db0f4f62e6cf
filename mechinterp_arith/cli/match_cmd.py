"""``mechinterp-arith match``: OOD inputs' residual streams against their ID representatives'."""

from __future__ import annotations

from ..analysis.choices import MATCH_ANSWERS
from .common import (
    add_checkpoint_arg,
    add_device_arg,
    add_html_arg,
    add_json_arg,
    add_ood_sample_args,
    fmt,
    print_json,
    write_figure_html,
)


def register(sub) -> None:
    p = sub.add_parser(
        "match",
        help="cosine similarity of OOD vs ID-representative activations per state x position",
        description="For OOD pairs (both operands n+1 digits) and their representatives (a mod 10^n, "
        "b mod 10^n): mean cosine similarity and relative L2 distance of every residual "
        "state at every position; where the extra digits sit and whether the streams "
        "re-converge at the answer positions.",
    )
    add_checkpoint_arg(p)
    add_ood_sample_args(p, "OOD pairs")
    p.add_argument(
        "--answers",
        default="representative",
        choices=MATCH_ANSWERS,
        help="answer tokens fed to both runs: the representative's answer (default) or each run's greedy answer",
    )
    add_html_arg(p, "the heatmaps")
    add_json_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="matching OOD and ID activations of {checkpoint}")


def run(args) -> int:
    from ..analysis.matching import match_ood
    from ..core.checkpoint import load

    ckpt = load(args.checkpoint, device=args.device)
    res = match_ood(ckpt, n=args.n, ood_digits=args.ood_digits, answers=args.answers, seed=args.seed)
    if args.html:
        write_figure_html(args.html, res.figure())
    s = res.summary()
    if args.json:
        print_json({"checkpoint": ckpt.name, "task": ckpt.task.name, **s})
        return 0
    roles = dict(zip(res.positions, res.roles))
    print(f"{ckpt.name}: {res.n} OOD pairs vs their ID representatives (answers fed: {res.answers})")
    print("extra-digit positions: " + ", ".join(f"{p} ({roles[p]})" for p in res.differing_positions))
    print(
        f"{'state':<28}{'cos@extra':>10}{'cos@answer':>11}{'relL2@extra':>12}{'relL2@answer':>13}{'baseline cos@answer':>20}"
    )
    for h, d in s["by_state"].items():
        print(
            f"{h:<28}{fmt(d['cosine_at_differing_positions']):>10}{fmt(d['cosine_at_answer_positions']):>11}"
            f"{fmt(d['rel_l2_at_differing_positions']):>12}{fmt(d['rel_l2_at_answer_positions']):>13}"
            f"{fmt(d['baseline_cosine_at_answer_positions']):>20}"
        )
    return 0
