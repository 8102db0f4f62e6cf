"""Discovered circuits: for each answer digit, the circuit ``discover`` finds (EAP-IG ranking, exact
faithfulness on held-out pairs) drawn as a graph, nodes coloured by the addition sub-task they are
necessary for (:mod:`mechinterp_arith.analysis.subtasks`; addition only)."""

from __future__ import annotations

from ...analysis.circuit_comparison import compare_circuits
from ...analysis.circuit_plot import circuit_figure, circuits_side_by_side
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
    rows, figures, notes, found = [], [], [], {}
    for k in circuit_digits(ckpt.task):
        circuit, error = attempt(discover, ckpt, k, n=n, n_heldout=heldout, seed=seed)
        if circuit is None:
            notes.append(skipped(f"Answer digit {k}", error))
            continue
        found[k] = circuit
        tags, tag_error = attempt(subtask_tags, ckpt, circuit, n=size(ctx, 64, 24), seed=seed)
        if tags is None:
            notes.append(skipped(f"Sub-task colours of answer digit {k}", tag_error))
        rows.append(
            [
                f"10^{k}",
                f"{circuit.n_edges} ({100 * circuit.n_edges / circuit.n_edges_total:.1f}%)",
                f"{circuit.faithfulness:.3f} {ci(circuit.faithfulness_ci95)}",
                f"{circuit.agreement:.3f} {ci(circuit.agreement_ci95)}",
                f"{circuit.cpr:.3f} / {circuit.cmd:.3f}",
                f"{circuit.metrics['random']['cpr']:.3f} / {circuit.metrics['random']['cmd']:.3f}",
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
            rows,
            [
                "answer digit",
                "edges (share of the graph)",
                "faithfulness",
                "digit kept",
                "MIB cpr / cmd",
                "random ranking cpr / cmd",
                "seconds",
            ],
            cls="grid",
        ),
        *figures,
        *longer_operands(ctx, found, n, heldout),
        *notes,
    ]
    return {"title": TITLE, "html": "\n".join(html)}


def longer_operands(ctx: ReportContext, id_circuits: dict, n: int, heldout: int) -> list[str]:
    """When the format holds operands longer than the trained ones: each answer digit's circuit on
    pairs of the widest operands, how much it reuses the ID circuits (by role:
    :func:`~mechinterp_arith.analysis.circuit_comparison.compare_circuits`), and the ID circuit of
    digit n-1 beside the longer operands' circuit of digit n."""
    ckpt, seed = ctx.ckpt, ctx.settings.seed
    task = ckpt.task
    if task.width <= task.digits or not id_circuits:
        return []
    m = task.width
    circuits = {("model", seed, task.digits, k): c for k, c in id_circuits.items()}
    notes = []
    for k in range(min(m, task.answer_width - 1) + 1):
        circuit, error = attempt(discover, ckpt, k, n=n, n_heldout=heldout, seed=seed, operand_digits=m)
        if circuit is None:  # a finding at this length (the model does not compute the digit), not a skip
            notes.append(f'<p class="note">Answer digit {k} at {m} digits: no circuit ({escape(error)})</p>')
            continue
        circuits[("model", seed, m, k)] = circuit
    table_rows = compare_circuits(circuits, task)
    long = table_rows[table_rows.operand_digits == m]
    body = [
        [
            r["digit"],
            r["n_edges"],
            f"{r['faithfulness']:.3f}",
            f"{r['agreement']:.3f}",
            f"{r['cpr']:.3f} / {r['cmd']:.3f}",
            "-"
            if r.get("reuse_weighted") is None or r["reuse_weighted"] != r["reuse_weighted"]
            else f"{r['reuse_weighted']:.3f} / {r['reuse_jaccard']:.3f}",
            r["operand_readers"],
        ]
        for r in long.to_dict("records")
    ]
    labels = position_labels(task)
    panels = {}
    last = task.digits - 1
    if ("model", seed, task.digits, last) in circuits:
        panels[f"{task.digits} digits (trained), answer digit {last}"] = circuits[("model", seed, task.digits, last)]
    if ("model", seed, m, task.digits) in circuits:
        panels[f"{m} digits, answer digit {task.digits}"] = circuits[("model", seed, m, task.digits)]
    html = [
        f"<h3>At {m}-digit operands (longer than the trained {task.digits})</h3>",
        "<p>Reuse: weighted / unweighted Jaccard of the circuit's edges, matched by role (position relative to "
        f"the predicted digit), with the trained length's circuit of digit {last}; readers of a<sub>k</sub>, "
        "b<sub>k</sub>: the heads and MLPs whose inputs the circuit takes at those positions.</p>",
        table(
            body,
            ["answer digit", "edges", "faithfulness", "digit kept", "MIB cpr / cmd", "reuse", "readers of a_k, b_k"],
            cls="grid",
        ),
    ]
    if len(panels) == 2:
        html.append(ctx.figure(circuits_side_by_side(panels, labels, cols=2)))
    return html + notes
