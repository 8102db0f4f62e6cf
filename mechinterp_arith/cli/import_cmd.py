"""``mechinterp-arith import``: turn a minGPT/nanoGPT file into a hooked checkpoint directory."""

from __future__ import annotations

import shlex

from ..core.choices import ACTIVATIONS, DEFAULT_ACT, SOURCES
from .common import add_json_arg, add_task_args, print_json, task_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import a minGPT/nanoGPT checkpoint as a hooked model",
        description="Convert a minGPT or nanoGPT .pt file (read with weights_only=True) into a "
        "checkpoint directory that every other command reads. Layers, widths, "
        "vocabulary and context come from the tensor shapes; heads from --n-heads "
        "(or nanoGPT's model_args).",
    )
    p.add_argument(
        "path", metavar="PATH", help="the .pt file: a state dict, or nanoGPT's {'model': ..., 'model_args': ...}"
    )
    p.add_argument("--from", dest="source", choices=SOURCES, required=True, help="the code base that wrote it")
    p.add_argument(
        "--n-heads", type=int, default=None, help="attention heads (required unless model_args holds n_head)"
    )
    p.add_argument(
        "--act",
        choices=ACTIVATIONS,
        default=None,
        help=f"MLP activation (default: {', '.join(f'{k} for {v}' for v, k in DEFAULT_ACT.items())})",
    )
    t = p.add_argument_group("task the model was trained on (its token ids must mean what they mean in this format)")
    add_task_args(t)
    p.add_argument("--out", required=True, help="checkpoint directory to write (an earlier import there is replaced)")
    add_json_arg(p)
    p.set_defaults(func=run, start="importing {path}")


def run(args) -> int:
    from ..core.checkpoint import load
    from ..core.importer import import_checkpoint

    task = task_from_args(args)
    out = import_checkpoint(
        args.path,
        source=args.source,
        n_heads=args.n_heads,
        task=task,
        out=args.out,
        act_fn=args.act,
        command="mechinterp-arith " + shlex.join(args.argv),
    )
    ckpt = load(out, device="cpu")
    m, src = ckpt.model_config, ckpt.config["source"]
    if args.json:
        print_json(
            {
                "checkpoint": str(out),
                "task": task.name,
                "format": task.format,
                "model": m.to_dict(),
                "source": src,
                "command": ckpt.config["command"],
            }
        )
        return 0
    print(
        f"wrote {out}: {args.source} {m.n_layers} layers, {m.n_heads} heads, d_model {m.d_model}, d_mlp {m.d_mlp}, "
        f"{m.act_fn}, context {m.n_ctx}, vocab {m.d_vocab}; task {task.name} ({task.format} format); "
        f"source sha256 {src['sha256'][:12]}"
    )
    return 0
