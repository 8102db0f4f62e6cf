"""Representation sections: residual-stream PCA (clusters, OOD projection, training dynamics),
the logit lens, and OOD-vs-representative activation matching.

Built on :mod:`mechinterp_arith.analysis.pca`, :mod:`~mechinterp_arith.analysis.projection`,
:mod:`~mechinterp_arith.analysis.dynamics`, :mod:`~mechinterp_arith.analysis.logit_lens` and
:mod:`~mechinterp_arith.analysis.matching`; the default PCA setting is the study's Fig. 4 (final LayerNorm
output at the position predicting the units digit, operands in [0, 10^(n+1)), coloured by the units digit).
"""

from __future__ import annotations

from ...analysis import dynamics, matching, pca, projection
from ...analysis import logit_lens as lens_mod
from ...core import data
from ..context import ReportContext, escape, table
from .helpers import attempt, not_applicable, size, skipped, svg_only

PCA_TITLE = "Representations (PCA)"
LENS_TITLE = "Logit lens"
MATCH_TITLE = "Activation matching: OOD inputs vs their ID representatives"


def _f(x: float) -> str:
    return "nan" if x != x else f"{x:.3f}"


def _projection_rows(task, ctx: ReportContext) -> tuple[list, list[str]]:
    """The OOD projection at the units digit and at digit n (where equivalent and true labels
    differ), and a note for each label the task cannot project on."""
    n, seed, m = ctx.settings.n_samples, ctx.settings.seed, data.require_ood_digits(task)
    ida, idb = data.random_pairs(task, size(ctx, 1000, 150), seed=seed + 1)
    ooa, oob = data.ood_both(task, m, n, seed=seed)
    out, notes = [], []
    digits = ["ans0"] + ([f"ans{task.digits}"] if 0 < task.digits < task.answer_width else [])
    for label in digits:
        res, reason = attempt(projection.ood_projection, ctx.ckpt, (ida, idb), (ooa, oob), position=label, label=label)
        if res is None:
            notes.append(skipped(f"The OOD projection of {label}", reason))
        else:
            out.append((label, res))
    return out, notes


def pca_section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, PCA_TITLE, "PCA of the hidden states")
    if note:
        return note
    ckpt, task, seed = ctx.ckpt, ctx.ckpt.task, ctx.settings.seed
    n_pca = size(ctx, 2000, 300)
    hi = 10 ** min(task.digits + 1, task.width)
    a, b = data.random_pairs(task, n_pca, seed=seed, max_value=hi)
    res = pca.residual_pca(ckpt, a, b)
    s = res.summary()
    html = [
        f"<p>Fig.-4 setting: <code>{escape(res.hook)}</code> at position {res.position} (predicts the units "
        f"digit) over {n_pca} random pairs with operands in [0, {hi}), coloured by the units digit of the "
        f"answer. Separability in the top {res.k} components: nearest-centroid accuracy (in-sample) and silhouette.</p>",
        table(
            [
                ["nearest-centroid accuracy", _f(res.nearest_centroid_accuracy)],
                ["silhouette", _f(res.silhouette)],
                ["explained variance (top 10)", " ".join(f"{r:.3f}" for r in s["explained_variance_ratio"])],
            ]
        ),
    ]
    fig = svg_only(res.figure(dims=2, max_points=size(ctx, 2000, 300)))
    fig.update_layout(title=None)
    html.append(ctx.figure(fig, height=480))

    m = data.default_ood_digits(task)
    if m is not None:
        rows, figs = [], []
        found, notes = _projection_rows(task, ctx)
        for label, r in found:
            d = r.summary()
            rows.append(
                [
                    label,
                    r.position,
                    d["n_id"],
                    d["n_ood"],
                    _f(d["id_nearest_centroid_accuracy"]),
                    _f(d["ood_on_equivalent_cluster"]),
                    _f(d["ood_on_true_cluster"]),
                    _f(d["labels_differ"]),
                    _f(d["ood_on_equivalent_cluster_where_differ"]),
                    _f(d["ood_on_true_cluster_where_differ"]),
                ]
            )
            figs.append(r)
        html.append(
            f"<h3>OOD projection</h3><p>PCA and label centroids fitted on ID pairs; each pair with both "
            f"operands {m} digits is assigned to its nearest ID centroid (top {res.k} components), then "
            f"compared with the label of its ID representative (equivalent) and of its true answer. "
            f"For the units digit of a sum the two labels coincide; at digit {task.digits} they can differ.</p>"
        )
        html.append(
            table(
                rows,
                [
                    "label",
                    "position",
                    "n ID",
                    "n OOD",
                    "ID accuracy",
                    "OOD on equivalent cluster",
                    "OOD on true cluster",
                    "labels differ",
                    "equivalent, where differ",
                    "true, where differ",
                ],
                cls="grid",
            )
        )
        if figs:
            last = svg_only(figs[-1].figure(max_points=size(ctx, 1500, 200)))
            html.append(ctx.figure(last, height=460))
        html += notes

    steps = ckpt.snapshot_steps()
    if steps:
        if ctx.settings.quick:
            steps = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
        n_dyn = size(ctx, 500, 60)
        dyn = dynamics.pca_dynamics(ckpt, a[:n_dyn], b[:n_dyn], steps=steps)
        html.append(
            f"<h3>Training dynamics</h3><p>The same PCA on each of {len(steps)} training snapshots "
            f"({n_dyn} pairs of the set above).</p>"
        )
        curve = dyn.figure()
        curve.update_layout(title=None)
        html.append(ctx.figure(curve, height=340))
        panels = svg_only(dyn.scatter_figure(max_points=n_dyn))
        panels.update_layout(title=None)
        html.append(ctx.figure(panels, height=360))
    else:
        html.append("<p>This checkpoint holds no training snapshots: no training dynamics.</p>")
    return {"title": PCA_TITLE, "html": "\n".join(html)}


def logit_lens_section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, LENS_TITLE, "The logit lens over layers")
    if note:
        return note
    n = ctx.settings.n_samples
    lens = lens_mod.id_ood_logit_lens(ctx.ckpt, n=n, seed=ctx.settings.seed)
    fig = lens.figure()
    fig.update_layout(title=None)
    sets = list(dict.fromkeys(zip(lens.frame["set"], lens.frame["target"])))
    last = lens.frame[lens.frame["layer"] == lens.frame["layer"].max()]
    rows = [
        [f"{s}: {t} digit"]
        + [f"{x:.3f}" for x in last[(last["set"] == s) & (last["target"] == t)].sort_values("digit")["mean_prob"]]
        for s, t in sets
    ]
    A = ctx.ckpt.task.answer_width
    html = [
        f"<p>Every residual-stream state put through the final LayerNorm and unembedding, read at the position "
        f"predicting each answer digit (digit 0 = units): mean probability of the target digit over {n} ID pairs "
        f"(true digit) and {n} OOD pairs (the equivalent relation's digit and the true digit; the model's own "
        f"greedy answer teacher-forced). The last state reproduces the logits (max |diff| "
        f"{lens.final_max_abs_diff:.1e}).</p>",
        ctx.figure(fig, height=420),
        "<p>Mean probability at the last state:</p>",
        table(rows, ["set: target"] + [f"digit {k}" for k in range(A)], cls="grid"),
    ]
    return {"title": LENS_TITLE, "html": "\n".join(html)}


def matching_section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, MATCH_TITLE, "OOD-vs-ID activation matching", needs_ood=True)
    if note:
        return note
    task = ctx.ckpt.task
    res = matching.match_ood(ctx.ckpt, n=ctx.settings.n_samples, seed=ctx.settings.seed)
    s = res.summary()["by_state"]
    rows = [
        [
            h,
            _f(v["cosine_at_differing_positions"]),
            _f(v["cosine_at_answer_positions"]),
            _f(v["baseline_cosine_at_answer_positions"]),
        ]
        for h, v in s.items()
    ]
    fig = res.figure()
    fig.update_layout(title=None)
    html = [
        f"<p>Cosine similarity (per state x position, mean over {res.n} pairs) between the residual stream of an "
        f"input with both operands {data.default_ood_digits(task)} digits and that of its ID representative, both reading the "
        f"representative's answer; * marks the positions where the tokens differ (the extra digits). Baseline: "
        f"two unrelated ID inputs.</p>",
        ctx.figure(fig, height=420),
        table(
            rows,
            ["state", "cosine at the extra digits", "cosine at answer positions", "baseline at answer positions"],
            cls="grid",
        ),
    ]
    return {"title": MATCH_TITLE, "html": "\n".join(html)}
