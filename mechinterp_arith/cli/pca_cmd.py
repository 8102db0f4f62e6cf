"""``mechinterp-arith pca``: residual-stream PCA, label separability and the OOD projection.

Defaults are the study's Fig. 4 setting: the final LayerNorm output (scale and bias applied) at
the position predicting the units digit, over 10,000 random pairs with each operand in
[0, 10^(n+1)), coloured by the units digit of the result.
"""

from __future__ import annotations

from ..analysis.choices import DEFAULT_HOOK, DEFAULT_K
from ..core.choices import DEFAULT_LABEL, LABEL_HELP
from .common import (
    add_checkpoint_arg,
    add_device_arg,
    add_html_arg,
    add_json_arg,
    fmt,
    print_json,
    require_positive,
    write_figure_html,
)


def register(sub) -> None:
    p = sub.add_parser(
        "pca",
        help="PCA of a hook at a position: explained variance, label separability, OOD projection",
        description="PCA of activations at one hook x position over random operand pairs (default: the "
        "study's Fig. 4 setting). Separability = nearest-centroid accuracy and silhouette of the "
        "label in the top-k components. OOD projection: PCA and centroids fitted on ID pairs; "
        "the share of OOD pairs whose nearest centroid is the label of (a mod 10^n, b mod 10^n) "
        "versus that of the true answer.",
    )
    add_checkpoint_arg(p)
    p.add_argument("--hook", default=DEFAULT_HOOK, help=f"TransformerLens hook name (default {DEFAULT_HOOK})")
    p.add_argument(
        "--position",
        default="units",
        help="input position: an index, 'units' or 'ans<k>' (the position predicting answer digit k); default units",
    )
    p.add_argument("--label", default=DEFAULT_LABEL, help=f"{LABEL_HELP}; default units")
    p.add_argument("--n", type=int, default=10_000, help="random pairs, each operand in [0, 10^(n+1)) (default 10,000)")
    p.add_argument(
        "--n-id", type=int, default=2000, help="random n-digit pairs the OOD projection is fitted on (default 2,000)"
    )
    p.add_argument("--k", type=int, default=DEFAULT_K, help="components for separability (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--each-site",
        "--sweep",  # its former name, kept: "sweep" now names only the sweep command's grids of training runs
        dest="each_site",
        action="store_true",
        help="instead: every residual state x answer position on --n ID pairs, label = the digit each position predicts",
    )
    add_html_arg(p)
    add_json_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run, start="PCA of {checkpoint}")


def run(args) -> int:
    from ..analysis.activations import resolve_hook
    from ..analysis.pca import pca_each_site
    from ..analysis.projection import study_pca
    from ..core import data
    from ..core.checkpoint import load
    from ..core.labels import parse_label
    from ..core.positions import resolve_position

    ckpt = load(args.checkpoint, device=args.device)
    task = ckpt.task
    require_positive(args, "n", "n_id", "k")
    hook = resolve_hook(ckpt.model, args.hook)
    pos = resolve_position(task, args.position)
    parse_label(task, args.label)
    if args.each_site:
        a, b = data.random_pairs(task, args.n, seed=args.seed)
        sites = pca_each_site(ckpt, a, b, k=args.k)
        if args.html:
            write_figure_html(args.html, sites.figure())
        if args.json:
            print_json(
                {
                    "checkpoint": ckpt.name,
                    "task": task.name,
                    "n": args.n,
                    "k": args.k,
                    "rows": sites.frame.to_dict(orient="records"),
                }
            )
        else:
            print(
                sites.frame.pivot(index="hook", columns="position", values="nearest_centroid_accuracy")
                .round(3)
                .to_string()
            )
        return 0
    res, _, out = study_pca(ckpt, args.n, args.n_id, hook, pos, args.label, args.k, seed=args.seed)
    out = {"checkpoint": ckpt.name, "task": task.name, **out}
    if args.html:
        write_figure_html(args.html, res.figure(dims=3))
    if args.json:
        print_json(out)
        return 0
    print(f"{ckpt.name}: PCA of {hook} @ position {pos}, label {args.label}, {out['inputs']}")
    print("explained variance ratio: " + " ".join(f"{r:.3f}" for r in out["explained_variance_ratio"]))
    print(
        f"separability in top {args.k}: nearest-centroid accuracy {fmt(out['nearest_centroid_accuracy'])}, "
        f"silhouette {fmt(out['silhouette'])}"
    )
    if "ood_on_equivalent_cluster" in out:
        print(
            f"OOD projection ({out['n_ood']} OOD pairs on the PCA of {out['n_id']} ID pairs): "
            f"{fmt(out['ood_on_equivalent_cluster'])} on the equivalent cluster, {fmt(out['ood_on_true_cluster'])} on "
            f"the true-answer cluster (labels differ on {fmt(out['labels_differ'])})"
        )
    return 0
