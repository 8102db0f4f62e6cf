"""Model card: the task and its token format, the architecture, training and how to reproduce it."""

from __future__ import annotations

from ...core.data import example_pair
from ...core.model import n_params
from ...core.version import __version__
from ..context import ReportContext, escape, table

TITLE = "Model card"


def format_example(task) -> tuple[str, str]:
    """``(text, explanation)`` of the task's example (:func:`~mechinterp_arith.core.data.example_pair`)
    in its token format."""
    a, b = example_pair(task)
    text = task.to_text(a, b)
    answer = int(task.apply(a, b))
    if task.format == "paper":
        W = task.width
        why = (
            f"a = {a} and b = {b} zero-padded to {W} digits ({text[:W]} {text[W : 2 * W]}), then the answer "
            f"{answer} zero-padded to {task.answer_width} digits and written units first ({text[2 * W :]}); "
            f"the model reads the first {task.prompt_len} tokens and generates the answer one digit at a time."
        )
    else:
        order = "units first" if task.answer_lsb_first else "most significant digit first"
        bos = "'^' (the BOS token) starts it; " if task.bos else ""
        why = f"{bos}{task.describe(str(a), str(b))} = {answer}, the answer written {order}, '.' ends the example."
    return text, why


def section(ctx: ReportContext) -> dict:
    ckpt, task, mc = ctx.ckpt, ctx.ckpt.task, ctx.ckpt.model_config
    text, why = format_example(task)
    training = ckpt.config.get("training") or {}
    last = ckpt.history[-1] if ckpt.history else {}
    steps = ckpt.snapshot_steps()
    overview = table(
        [
            ("checkpoint", ckpt.path if ckpt.path is not None else ckpt.name),
            ("task", f"{task.name}: {task.describe()} on operands of up to {task.digits} digits"),
            ("format", f"{task.format} (operands up to width {task.width}, answer width {task.answer_width})"),
            (
                "architecture",
                f"{mc.n_layers} layers, {mc.n_heads} heads, d_model {mc.d_model}, d_mlp {mc.d_mlp}, "
                f"{mc.act_fn}, {mc.positional} positions, context {mc.n_ctx}, vocabulary {mc.d_vocab}",
            ),
            ("parameters", f"{n_params(ckpt.model):,}"),
            (
                "last evaluation",
                ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items())
                or "(no history)",
            ),
            ("snapshots", f"{len(steps)} (steps {steps[0]}..{steps[-1]})" if steps else "none"),
            ("source", ckpt.config.get("source") or "trained with this toolkit"),
            ("made by version", ckpt.config.get("package_version") or "?"),
            ("report by version", __version__),
        ]
    )
    command = ckpt.config.get("command")
    html = [
        overview,
        "<h3>Format example</h3>",
        f'<p><code class="example">{escape(text)}</code></p><p>{escape(why)}</p>',
    ]
    if training:
        html += [
            "<details><summary>Training configuration</summary>",
            table([(k, v) for k, v in training.items()], header=["setting", "value"], cls="kv compact"),
            "</details>",
        ]
    html += [
        "<h3>Reproduce</h3>",
        f"<pre>{escape(command)}</pre>" if command else "<p>(the command was not recorded)</p>",
    ]
    return {"title": TITLE, "html": "\n".join(html)}
