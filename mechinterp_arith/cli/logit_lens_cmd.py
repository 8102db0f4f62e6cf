"""``mechinterp-arith logit-lens``: what each residual state predicts at each answer position."""

from __future__ import annotations

from ..analysis.choices import ANSWER_SOURCES
from .common import (
    add_checkpoint_arg,
    add_device_arg,
    add_html_arg,
    add_json_arg,
    add_ood_sample_args,
    print_json,
    write_figure_html,
)


def register(sub) -> None:
    p = sub.add_parser(
        "logit-lens",
        help="logit lens per residual state x answer digit, ID and OOD",
        description="Each residual state through the real final LayerNorm and unembedding "
        "(TransformerLens accumulated_resid(apply_ln=True)): mean probability and rank of the "
        "correct digit on random ID pairs; on OOD pairs, of the digit of (a mod 10^n) op "
        "(b mod 10^n) and of the true digit.",
    )
    add_checkpoint_arg(p)
    add_ood_sample_args(p, "pairs per set")
    p.add_argument(
        "--ood-answers",
        default="greedy",
        choices=ANSWER_SOURCES,
        help="answer tokens teacher-forced on OOD inputs (default: the model's own greedy answer)",
    )
    add_html_arg(p, "the heatmaps")
    add_json_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="logit lens of {checkpoint}")


def run(args) -> int:
    from ..analysis.logit_lens import id_ood_logit_lens
    from ..core.checkpoint import load

    ckpt = load(args.checkpoint, device=args.device)
    res = id_ood_logit_lens(ckpt, n=args.n, ood_digits=args.ood_digits, ood_answers=args.ood_answers, seed=args.seed)
    if args.html:
        write_figure_html(args.html, res.figure())
    if args.json:
        print_json({"checkpoint": ckpt.name, "task": ckpt.task.name, "n": args.n, **res.summary()})
        return 0
    print(f"{ckpt.name}: logit lens (final-state lens vs model logits: max |diff| {res.final_max_abs_diff:.2e})")
    for s, t in res.frame[["set", "target"]].drop_duplicates().itertuples(index=False):
        print(
            f"\n{s}, {t} digit (forced answers: {res.answers[s]}): mean probability; columns = answer digit, units first"
        )
        print(res.table("mean_prob", s, t).round(3).to_string())
    return 0
