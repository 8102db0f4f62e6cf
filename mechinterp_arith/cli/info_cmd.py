"""``mechinterp-arith info``: what a checkpoint holds and how it was made."""

from __future__ import annotations

from .common import add_checkpoint_arg, add_json_arg, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help="task, architecture, training and provenance of a checkpoint",
        description="Show a checkpoint's task, model config, training settings, last "
        "metrics, snapshots and the command that reproduces it.",
    )
    add_checkpoint_arg(p)
    add_json_arg(p)
    p.set_defaults(func=run, start="reading {checkpoint}")


def summary(ckpt) -> dict:
    from ..core.data import example_pair
    from ..core.model import n_params

    return {
        "checkpoint": str(ckpt.path),
        "task": {
            **ckpt.task.to_dict(),
            "name": ckpt.task.name,
            "formula": ckpt.task.describe(),
            "example": ckpt.task.to_text(*example_pair(ckpt.task)),
        },
        "model": {**ckpt.model_config.to_dict(), "n_params": n_params(ckpt.model)},
        "training": ckpt.config.get("training", {}),
        "last_metrics": ckpt.history[-1] if ckpt.history else None,
        "snapshot_steps": ckpt.snapshot_steps(),
        "command": ckpt.config.get("command"),
        "source": ckpt.config.get("source"),
        "package_version": ckpt.config.get("package_version"),
    }


def number(value) -> str:
    """A metric as people read it: 6 significant digits (``loss 2.57791e-05``, ``lr 0.0003``), ints as they are."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def training_line(tr: dict, task) -> str:
    """The recipe a checkpoint was trained with (its config's resolved ``training``), in one line:
    budget, optimisation, then data (configs written before a key read as ``BEFORE_THE_KEY``)."""
    from ..core.data import default_split_sizes
    from ..core.train_config import BEFORE_THE_KEY

    tr = {**BEFORE_THE_KEY, **tr}
    parts = [
        f"{tr.get('steps')} steps of batch {tr.get('batch_size')}, lr {tr.get('lr')} "
        f"({tr.get('schedule', 'cosine')}, warmup {tr.get('warmup')})",
        f"{tr.get('n_train') or default_split_sizes(task)[0]:,} training pairs",
        f"{tr['operand_lengths']} operand lengths",
    ]
    if tr.get("random_positions") is not None:
        parts.append("random positions" if tr["random_positions"] else "fixed positions")
    if tr.get("distractors"):
        parts.append("distractor digits")
    if tr.get("target_accuracy") is not None:
        parts.append(f"stops at {tr['target_accuracy']} held-out exact")
    return ", ".join(parts)


def run(args) -> int:
    from ..core.checkpoint import load

    ckpt = load(args.checkpoint, device="cpu")
    s = summary(ckpt)
    if args.json:
        print_json(s)
        return 0
    t, m = s["task"], s["model"]
    print(f"checkpoint  {s['checkpoint']}")
    print(f"task        {t['name']}: {t['formula']}, format {t['format']} (width {t['width']}), e.g. {t['example']}")
    print(
        f"model       {m['n_layers']} layers, {m['n_heads']} heads, d_model {m['d_model']}, d_mlp {m['d_mlp']}, "
        f"{m['act_fn']}, {m['positional']} positions, context {m['n_ctx']}, {m['n_params']:,} parameters"
    )
    if s["training"]:
        print(f"training    {training_line(s['training'], ckpt.task)}")
    if s["last_metrics"]:
        print("last eval   " + ", ".join(f"{k} {number(v)}" for k, v in s["last_metrics"].items()))
    if s["snapshot_steps"]:
        print(f"snapshots   {len(s['snapshot_steps'])} at steps {s['snapshot_steps']}")
    if s["source"]:
        print(f"source      {s['source']}")
    print(f"reproduce   {s['command'] or '(not recorded)'}")
    return 0
