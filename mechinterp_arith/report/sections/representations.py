"""Representation sections: residual-stream PCA (clusters, OOD projection, training dynamics),
the logit lens, and OOD-vs-representative activation matching.

Built on :mod:`mechinterp_arith.analysis.pca`, :mod:`~mechinterp_arith.analysis.projection`,
:mod:`~mechinterp_arith.analysis.dynamics`, :mod:`~mechinterp_arith.analysis.logit_lens` and
:mod:`~mechinterp_arith.analysis.matching`; the PCA and its OOD projection are the study's Fig. 4 setting
as ``mechinterp-arith pca`` computes it (:func:`~mechinterp_arith.analysis.projection.study_pca`: final
LayerNorm output at the position predicting the units digit, operands in [0, 10^(n+1)), coloured by the
units digit), at the report's sizes.
"""

from __future__ import annotations

from ...analysis import dynamics, matching, projection
from ...analysis import logit_lens as lens_mod
from ...core import data
from ..context import ReportContext, escape, table
from .helpers import attempt, not_applicable, size, skipped, svg_only

PCA_TITLE = "Representations (PCA)"
LENS_TITLE = "Logit lens"
MATCH_TITLE = "Activation matching: OOD inputs vs their ID representatives"


def _f(x: float) -> str:
    return "nan" if x != x else f"{x:.3f}"


def fig4(ctx: ReportContext, label: str = "units"):
    """:func:`~mechinterp_arith.analysis.projection.study_pca` at the report's sizes (what
    ``mechinterp-arith pca --n N --n-id M --seed S`` prints, with ``--position``/``--label`` set to
    ``label`` when it is not the units digit): ``(StudyPCA, None)``, or ``(None, reason)`` when it does
    not apply; computed once per report."""
    n, n_id, seed = size(ctx, 2000, 300), size(ctx, 1000, 150), ctx.settings.seed
    position = None if label == "units" else label
    return ctx.cached(
        f"study_pca:{label}",
        lambda: attempt(projection.study_pca, ctx.ckpt, n, n_id, position=position, label=label, seed=seed),
    )


def pca_section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, PCA_TITLE, "PCA of the hidden states")
    if note:
        return note
    ckpt, task = ctx.ckpt, ctx.ckpt.task
    found, reason = fig4(ctx)
    if found is None:
        return {"title": PCA_TITLE, "html": skipped("The PCA of the Fig.-4 setting", reason)}
    res, s = found.pca, found.summary
    html = [
        f"<p>Fig.-4 setting (<code>mechinterp-arith pca --n {s['n']} --n-id {size(ctx, 1000, 150)} --seed "
        f"{ctx.settings.seed}</code>): <code>{escape(res.hook)}</code> at position {res.position} (predicts the "
        f"units digit) over {escape(s['inputs'])}, coloured by the units digit of the answer. Separability in the "
        f"top {res.k} components: nearest-centroid accuracy (in-sample) and silhouette.</p>",
        table(
            [
                ["nearest-centroid accuracy", _f(s["nearest_centroid_accuracy"])],
                ["silhouette", _f(s["silhouette"])],
                ["explained variance (top 10)", " ".join(f"{r:.3f}" for r in s["explained_variance_ratio"])],
            ]
        ),
    ]
    fig = svg_only(res.figure(dims=2, max_points=size(ctx, 2000, 300)))
    fig.update_layout(title=None)
    html.append(ctx.figure(fig, height=480))

    labels = ["units"] + ([f"ans{task.digits}"] if 0 < task.digits < task.answer_width else [])
    if found.projection is None:  # the format holds no longer operand
        labels = []
        html.append(skipped("The OOD projection", "no pair of the set is out of distribution"))
    rows, figs, notes = [], [], []
    for label in labels:
        got, why = (found, None) if label == "units" else fig4(ctx, label)
        if got is None or got.projection is None:
            notes.append(skipped(f"The OOD projection of {label}", why or "no pair of the set is out of distribution"))
            continue
        d = got.summary
        rows.append(
            [
                label,
                d["position"],
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
        figs.append(got.projection)
    if rows:
        html.append(
            f"<h3>OOD projection</h3><p>PCA and label centroids fitted on {size(ctx, 1000, 150)} random ID pairs; "
            f"each pair of the set above with an operand longer than {task.digits} digits is assigned to its "
            f"nearest ID centroid (top {res.k} components), then compared with the label of its ID representative "
            f"(equivalent) and of its true answer (<code>pca --position L --label L</code> for label L). For the "
            f"units digit of a sum the two labels coincide; at digit {task.digits} they can differ.</p>"
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
        last = svg_only(figs[-1].figure(max_points=size(ctx, 1500, 200)))
        html.append(ctx.figure(last, height=460))
    html += notes

    steps = ckpt.snapshot_steps()
    if steps:
        if ctx.settings.quick:
            steps = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
        n_dyn = size(ctx, 500, 60)
        a, b = (x[:n_dyn] for x in res.operands)
        dyn = dynamics.pca_dynamics(ckpt, a, b, steps=steps)
        html.append(
            f"<h3>Training dynamics</h3><p>The same PCA on each of {len(steps)} training snapshots "
            f"({n_dyn} pairs of the set above).</p>"
        )
        curve = dyn.figure()
        curve.update_layout(title=None)
        html.append(ctx.figure(curve, height=340))
        panels = svg_only(dyn.scatter_figure(max_points=n_dyn))
        # the legend (one entry per label value) below the panels: at the right it was clipped
        panels.update_layout(
            title=None, legend={"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top"}, margin={"b": 90}
        )
        html.append(ctx.figure(panels, height=420))
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
