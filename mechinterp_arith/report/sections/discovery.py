"""Discovered circuits: for each answer digit, the circuit ``discover`` finds (EAP-IG ranking, exact
faithfulness on held-out pairs) drawn as a graph, nodes coloured by the addition sub-task they are
necessary for (:mod:`mechinterp_arith.analysis.subtasks`; addition only)."""

from __future__ import annotations

from ...analysis.circuit_plot import circuit_figure
from ...analysis.circuits import circuit_digits
from ...analysis.discovery import discover
from ...analysis.subtasks import subtask_tags
from ...core.positions import position_labels
from ..context import ReportContext, escape, table
from .helpers import attempt, ci, not_applicable, size, skipped

TITLE = "Discovered circuits"


def section(ctx: ReportContext) -> dict:
    note = not_applicable(ctx, TITLE, "Circuit discovery")
    if note:
        return note
    ckpt, seed = ctx.ckpt, ctx.settings.seed
    n, heldout = size(ctx, 48, 24), size(ctx, 256, 48)
    labels = position_labels(ckpt.task)
    rows, figures, notes = [], [], []
    for k in circuit_digits(ckpt.task):
        circuit, error = attempt(discover, ckpt, k, n=n, n_heldout=heldout, seed=seed)
        if circuit is None:
            notes.append(skipped(f"Answer digit {k}", error))
            continue
        tags, tag_error = attempt(subtask_tags, ckpt, circuit, n=size(ctx, 64, 24), seed=seed)
        if tags is None:
            notes.append(skipped(f"Sub-task colours of answer digit {k}", tag_error))
        rows.append(
            [
                f"10^{k}",
                f"{circuit.n_edges} ({100 * circuit.n_edges / circuit.n_edges_total:.1f}%)",
                f"{circuit.faithfulness:.3f} {ci(circuit.faithfulness_ci95)}",
                f"{circuit.agreement:.3f} {ci(circuit.agreement_ci95)}",
                f"{circuit.seconds:.1f}",
            ]
        )
        tagged = (
            ""
            if tags is None
            else "; ".join(f"{r.node}: {', '.join(r.tags)}" for r in tags.itertuples() if len(r.tags))
        )
        figures += [
            ctx.figure(circuit_figure(circuit, tags, labels)),
            f'<p class="note">Necessary for (share of the gap lost without the node >= 0.2): '
            f"{escape(tagged or 'no node tagged')}</p>",
        ]
    html = [
        "<p>Each answer digit's circuit: the edges of TransformerLens's attribution-patching graph ranked by "
        "EAP-IG on pairs whose answers differ only in that digit, the smallest top-ranked set whose exact ablation "
        "(every other edge given the corrupted run's value) keeps 95% of the logit-difference gap on the search "
        f"pairs, verified on {heldout} held-out pairs (faithfulness: share of the gap recovered, bootstrap 95% "
        "interval; digit kept: share of pairs whose circuit still predicts the clean digit, Wilson interval). "
        "docs/circuits.md describes the search.</p>",
        table(
            rows, ["answer digit", "edges (share of the graph)", "faithfulness", "digit kept", "seconds"], cls="grid"
        ),
        *figures,
        *notes,
    ]
    return {"title": TITLE, "html": "\n".join(html)}
