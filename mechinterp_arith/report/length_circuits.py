"""The lab page's circuit section: what changes inside, edge by edge (the results of
``analyses/circuits_by_length.py``: every answer digit's circuit of the coupled and learned models at
3 and 6 digits, compared by role; docs/length_generalisation.md).

>>> circuits_section(json.loads(Path("analyses/results/circuits_by_length.json").read_text()), ids)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.circuit_plot import circuits_side_by_side
from ..analysis.discovery import Circuit
from ..core.files import require_regular_file
from ..core.positions import position_labels
from ..core.tasks import Task
from .assets import ElementIds, figure_html
from .context import escape, table

TITLE = "What changes inside, edge by edge"


def read_circuits(path: str | Path) -> dict[str, Any]:
    """The parsed results of ``analyses/circuits_by_length.py``; ValueError naming the file otherwise."""
    require_regular_file(Path(path))
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not {"headline", "table", "circuits"} <= set(data):
            raise ValueError("not an object with headline, table and circuits")
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not the results of analyses/circuits_by_length.py ({e})") from None
    return data


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else escape(x)


def circuits_section(data: dict[str, Any], ids: ElementIds, seed: int = 0) -> dict[str, str]:
    """The headline table (per scheme, over seeds), the table of the 6-digit circuits of digits >= 3,
    and the side-by-side circuit figure of ``seed``: learned vs coupled, ID (3 digits, digit 2) vs
    OOD length (6 digits, digit 4)."""
    rows = pd.DataFrame(data["table"])
    head = data["headline"]
    body = []
    for scheme, h in head.items():
        sims = h.get("seed_similarity_head_agnostic", {})
        body.append(
            [
                scheme,
                _fmt(h["reuse_weighted_vs_id_analogue"]["median"]),
                _fmt(h["reuse_jaccard_vs_id_analogue"]["median"]),
                _fmt(h["best_reuse_weighted"]["median"]),
                _fmt(h["ood_faithfulness"]["median"]),
                _fmt(h["ood_agreement"]["median"]),
                h["ood_digits_without_circuit"],
                _fmt(sims.get("6_4", {}).get("mean_offdiagonal")),
            ]
        )
    header = [
        "scheme",
        "reuse of the ID analogue (weighted, median)",
        "reuse (Jaccard, median)",
        "best reuse of any ID digit",
        "6-digit faithfulness (median)",
        "digit kept (median)",
        "6-digit digits without a circuit",
        "seed similarity, digit 4 at 6 digits",
    ]
    ood = rows[(rows.operand_digits == 6) & (rows.digit >= 3)]
    cols = ["scheme", "seed", "digit", "n_edges", "score_total", "faithfulness", "agreement", "clean_logit_diff", "cmd"]
    cols += [c for c in ("reuse_weighted", "reuse_jaccard", "operand_readers") if c in ood]
    detail = [[_fmt(v) for v in r] for r in ood[cols].itertuples(index=False)]
    panels = {}
    circuits = {(c["scheme"], c["seed"], c["operand_digits"], c["digit"]): c["circuit"] for c in data["circuits"]}
    for m, k in ((3, 2), (6, 4)):
        for scheme in head:
            if (scheme, seed, m, k) in circuits:
                panels[f"{scheme}, {m}-digit operands, answer digit {k}"] = Circuit.from_json(
                    circuits[(scheme, seed, m, k)]
                )
    task = Task("add", 3, format="reversed", width=6)  # the lab's task (analyses/length_generalisation.py)
    figure = (
        figure_html(circuits_side_by_side(panels, position_labels(task), cols=max(1, len(head))), ids) if panels else ""
    )
    intro = (
        "<p>Edges are matched by role: an edge's position relative to the predicted digit k (a<sub>k</sub> is a+0, "
        "the position predicting digit k is ans-1), its writer and reader kept. Reuse: weighted Jaccard of "
        "|score| shares and unweighted Jaccard between a 6-digit circuit of digit k >= 3 and the same seed's "
        "3-digit circuit of its analogue (digit 2 for digits 3-5; digit 3, the carry out, for digit 6). Faithfulness "
        "divides by the clean-corrupted gap, so it means nothing where that gap (clean_logit_diff) is near 0. "
        f"Command: <code>{escape(data.get('command', ''))}</code>.</p>"
    )
    html = intro + table(body, header=header, cls="grid") + figure
    html += "<h3>6-digit circuits of digits 3 and up</h3>" + table(detail, header=cols, cls="grid")
    return {"title": TITLE, "html": html}
