"""Causal sections: activation-patching heatmaps, OOD-to-ID patching, and the circuit summary.

Built on :mod:`mechinterp_arith.analysis.circuits` (``digit_sites``, ``ood_sites``, ``head_operand_map`` filtered as ``circuit_heads``),
:mod:`mechinterp_arith.analysis.patching` (``patch_each_site``) and :mod:`mechinterp_arith.analysis.prompt_pairs`.
Effects are normalised: 0 = no effect, 1 = the clean metric restored.
"""

from __future__ import annotations

import plotly.graph_objects as go

from ...analysis import circuits
from ...analysis.site_plot import site_figure
from ...core.positions import answer_positions, position_labels
from ..context import ReportContext, escape, table
from .helpers import attempt, not_applicable, size, skipped

PATCH_TITLE = "Activation patching"
CIRCUIT_TITLE = "Circuit summary"
KINDS = ("resid_pre", "attn_out", "mlp_out")


def digit_site_frames(ctx: ReportContext, digits: list[int], n: int) -> dict:
    """``digit -> circuits.digit_sites(...)`` frame (resid_pre, attn_out, mlp_out), once per report."""
    return ctx.cached(
        f"digit_sites:{digits}:{n}",
        lambda: {k: circuits.digit_sites(ctx.ckpt, k, n=n, seed=ctx.settings.seed) for k in digits},
    )


def patching_section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, PATCH_TITLE, "Activation-patching heatmaps")
    if note:
        return note
    task, cfg = ctx.ckpt.task, ctx.ckpt.model.cfg
    n = size(ctx, 64, 16)
    labels = position_labels(task)
    k = min(1, task.answer_width - 1)  # the tens digit: needs both units digits and the carry
    found, error = attempt(digit_site_frames, ctx, [k], n)
    if found is None:
        html = [skipped(f"Per-site patching of answer digit {k}", error)]
    else:
        sites = found[k]
        frames = [sites[sites.kind == kind] for kind in KINDS]
        html = [
            f"<p>Clean and corrupted inputs whose answers differ only in answer digit {k} (10^{k} place; {n} "
            f"pairs); metric: logit(clean digit) - logit(corrupted digit) at the position predicting it; each cell "
            f"patches one activation from the clean run into the corrupted run (normalised effect; clean "
            f"{sites.attrs['clean_logit_diff']:.2f}, corrupted {sites.attrs['corrupted_logit_diff']:.2f}).</p>",
            ctx.figure(site_figure(frames, [f"{kind}: answer digit {k}" for kind in KINDS], "effect", labels)),
        ]

    digits = circuits.circuit_digits(task)
    heads = [f"L{l}H{h}" for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    effects = circuits.head_effects(ctx.ckpt, digits, n=n, seed=ctx.settings.seed)
    eff = effects.pivot(index="digit", columns=["layer", "head"], values="effect").reindex(digits).to_numpy()
    fig = go.Figure(
        go.Heatmap(
            z=eff.astype(float),
            x=heads,
            y=[f"digit {d}" for d in digits],
            colorscale="RdBu",
            zmid=0,
            texttemplate="%{z:.2f}",
        )
    )
    fig.update_layout(height=120 + 45 * len(digits), margin={"t": 30, "b": 30}, yaxis_autorange="reversed")
    html += [
        "<h3>Head patching</h3><p>Each head's output (z) patched at every position at once, for pairs that "
        "differ in each answer digit (normalised effect; an empty row: no pairs change that digit alone).</p>",
        ctx.figure(fig),
    ]
    html += [skipped(f"Head patching of answer digit {k}", reason) for k, reason in effects.attrs["skipped"].items()]

    ood, error = attempt(circuits.ood_sites, ctx.ckpt, n=n, seed=ctx.settings.seed, kinds=("resid_pre",))
    if ood is None:
        html.append(skipped("OOD-to-ID patching", error))
    else:
        m = ood.attrs["m"]
        fwd, back = ood[ood.direction == "ood->id"], ood[ood.direction == "id->ood"]
        fig = site_figure(
            [fwd, fwd, back],
            [
                "relative activation difference |OOD - ID| / |ID| (resid_pre)",
                "OOD -> ID: share of answers that change",
                "ID -> OOD: share of answers that change",
            ],
            "act_diff",
            labels,
            colorscale="Viridis",
        )
        for i, (df, col) in enumerate(((fwd, "flip_rate"), (back, "flip_rate")), start=2):
            t = df.pivot(index="layer", columns="pos", values=col).reindex(columns=range(len(labels)))
            fig.data[i - 1].update(z=t.values.astype(float), zmin=0, zmax=1)
        top = fwd.sort_values("flip_rate", ascending=False).head(3)
        html += [
            f"<h3>OOD to ID patching: where the extra digits are dropped</h3>"
            f"<p>{ood.attrs['n_pairs']} inputs with both operands {m} digits and their ID representatives, both "
            f"reading the representative's answer (so they differ only at the extra digits). The OOD inputs' "
            f"answers equal the representative's on {ood.attrs['ood_answers_equal_representative']:.3f} of them "
            f"(exact {ood.attrs['ood_exact']:.3f}). Patching an OOD activation into the ID run (OOD -> ID) shows "
            f"whether the extra digits' information can change the answer from there. Largest share of answers "
            f"changed: OOD -> ID {fwd.flip_rate.max():.3f}, ID -> OOD {back.flip_rate.max():.3f}; largest "
            f"activation difference at an answer position: {fwd[fwd.pos.isin(answer_positions(task))].act_diff.max():.3f}.</p>",
            ctx.figure(fig, height=620),
            table(
                [
                    [r.label, f"L{r.layer}", f"{r.act_diff:.3f}", f"{r.flip_rate:.3f}", f"{r.true_digit_rate:.3f}"]
                    for r in top.itertuples()
                ],
                [
                    "position",
                    "layer",
                    "activation difference",
                    "answers changed",
                    f"predicts the true digit {task.digits}",
                ],
                cls="grid",
            ),
        ]
    return {"title": PATCH_TITLE, "html": "\n".join(html)}


def circuits_section(ctx: ReportContext) -> dict:
    what = "The circuit summary (which heads read which operand digits for each answer digit)"
    note = not_applicable(ctx, CIRCUIT_TITLE, what)
    if note:
        return note
    n = size(ctx, 64, 24)
    min_att, min_eff = 0.2, 0.1
    df = circuits.circuit_heads(ctx.ckpt, n=n, seed=ctx.settings.seed, min_attention=min_att, min_effect=min_eff)
    notes = [skipped(f"Answer digit {k}", reason) for k, reason in df.attrs["skipped"].items()]
    summary = []
    for k in circuits.circuit_digits(ctx.ckpt.task):
        if k in df.attrs["skipped"]:
            continue
        sub = df[df.digit == k].sort_values(["layer", "head", "operand", "place"])
        reads = [f"L{r.layer}H{r.head} reads {r.operand}{r.place}" for r in sub.itertuples()]
        summary.append([f"10^{k}", "; ".join(reads) or "none above the thresholds"])
    detail = [
        [
            f"10^{r.digit}",
            f"L{r.layer}H{r.head}",
            f"{r.operand}{r.place}",
            f"{r.attention:.2f}",
            f"{r.effect:.2f}",
            escape(r.best_label),
            f"{r.best_effect:.2f}",
        ]
        for r in df.sort_values(["digit", "effect"], ascending=[True, False]).itertuples()
    ]
    html = [
        f"<p>For each answer digit, the heads that attend from the position predicting it to an operand digit "
        f"(mean attention >= {min_att}) and whose output carries that digit there (normalised effect of patching "
        f"the head's z at that position, with pairs that change only that operand digit, >= {min_eff}); "
        f"{n} pairs each. <code>a0</code> is the units digit of a.</p>",
        table(summary, ["answer digit", "heads and the operand digits they read"], cls="grid"),
        "<details><summary>Every qualifying (head, operand digit)</summary>",
        table(
            detail,
            [
                "answer digit",
                "head",
                "operand digit",
                "attention",
                "effect",
                "position where patching it matters most",
                "effect there",
            ],
            cls="grid",
        ),
        "</details>",
        *notes,
    ]
    return {"title": CIRCUIT_TITLE, "html": "\n".join(html)}
