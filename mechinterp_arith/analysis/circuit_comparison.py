"""Compare discovered circuits across answer digits, operand lengths and seeds.

Edges of different digits sit at different positions, so circuits are compared by **role**: an
edge ``(writer, reader)`` at position p becomes ``(role of p relative to the predicted digit k,
writer, reader)``, where the role of ``a4`` for digit 4 is ``a+0`` (the operand digit of the same
place), of ``b3`` is ``b-1``, of the token ``ans3`` is ``ans-1`` (the position that predicts digit
4) and of ``=`` is ``ans-(k+1)`` (it predicts digit 0: ``=`` is answer token -1). Writers and
readers keep their layer and head. Across seeds heads have no common numbering, so
:func:`seed_similarity` also compares with heads dropped (``head_agnostic=True``).

- unweighted overlap: Jaccard ``|A & B| / |A | B|`` and containment ``|A & B| / |A|`` of role-edge sets;
- weighted overlap: weighted Jaccard ``sum min(wA, wB) / sum max(wA, wB)`` of each circuit's
  ``|score|`` normalised to sum 1 over its edges.

>>> role("a4", 4), role("b3", 4), role("=", 0), role("ans3", 4), role("+", 2)
('a+0', 'b-1', 'ans-1', 'ans-1', '+')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..core.positions import position_labels
from ..core.tasks import Task
from .discovery import Circuit
from .edge_graph import node_label

RoleEdge = tuple[str, str, str]  # (role, writer without position, reader without position)
Key = tuple[Any, ...]  # (scheme, seed, operand_digits, digit)


def role(label: str, digit: int) -> str:
    """The role of position label ``label`` relative to answer digit ``digit`` (module docstring)."""
    if label == "=":
        return f"ans{-1 - digit:+d}"
    m = re.fullmatch(r"([a-z]+)(\d+)", label)
    return label if m is None else f"{m.group(1)}{int(m.group(2)) - digit:+d}"


def role_edges(circuit: Circuit, task: Task, head_agnostic: bool = False) -> dict[RoleEdge, float]:
    """The circuit's edges keyed by role (module docstring), each with its share of the circuit's
    total ``|score|`` (the weights sum to 1; equal weights when every score is 0)."""
    labels = position_labels(task)

    def name(node: Any) -> str:
        text = node_label(node).split("@")[0]
        return re.sub(r"H\d+", "H*", text) if head_agnostic else text

    weights: dict[RoleEdge, float] = {}
    for writer, reader, score in circuit.edges():
        key = (role(labels[writer.position], circuit.digit), name(writer), name(reader))
        weights[key] = weights.get(key, 0.0) + abs(score)
    total = sum(weights.values())
    return {k: (v / total if total > 0 else 1.0 / len(weights)) for k, v in weights.items()}


def overlap(a: Mapping[RoleEdge, float], b: Mapping[RoleEdge, float]) -> dict[str, float]:
    """Unweighted ``jaccard`` and ``containment`` (share of ``a``'s edges in ``b``) and the weighted
    Jaccard ``weighted`` of two role-edge maps (NaN when both are empty)."""
    keys = set(a) | set(b)
    if not keys:
        return {"jaccard": float("nan"), "containment": float("nan"), "weighted": float("nan")}
    shared = set(a) & set(b)
    low = sum(min(a.get(k, 0.0), b.get(k, 0.0)) for k in keys)
    high = sum(max(a.get(k, 0.0), b.get(k, 0.0)) for k in keys)
    return {
        "jaccard": len(shared) / len(keys),
        "containment": len(shared) / len(a) if a else float("nan"),
        "weighted": low / high if high > 0 else float("nan"),
    }


def operand_readers(circuit: Circuit, task: Task) -> list[str]:
    """Heads (and MLPs) of the circuit that read a_k or b_k (k the circuit's digit): readers of edges
    at the positions of a_k and b_k, e.g. ``['L0H2.v@a+0', 'L0H1.k@b+0']``."""
    labels = position_labels(task)
    found = []
    for writer, reader, _ in circuit.edges():
        r = role(labels[writer.position], circuit.digit)
        if r in ("a+0", "b+0") and reader.kind != "logits":
            found.append(f"{node_label(reader).split('@')[0]}@{r}")
    return sorted(set(found))


def compare_circuits(circuits: Mapping[Key, Circuit], task: Task, id_digits: int | None = None) -> pd.DataFrame:
    """One row per circuit ``(scheme, seed, operand_digits, digit)``: size, total ``|score|`` of its
    edges, faithfulness, the held-out clean and corrupted logit differences, MIB's cpr/cmd (and the
    random ranking's), the heads reading a_k/b_k and, for digits k >= n = ``id_digits`` (default:
    the task's trained length) at longer operands M, how much the circuit reuses the ID circuits of
    the same scheme and seed: ``reuse_*`` against its ID analogue ``analogue_digit`` (digit n-1, the
    highest ID digit with a carry in, for k < M; digit n, the carry out, for k = M) and
    ``best_reuse_weighted`` (with ``best_id_digit``) over every ID digit 0..n. ID circuits are those
    at ``operand_digits == n``."""
    n = task.digits if id_digits is None else id_digits
    roles = {key: role_edges(c, task) for key, c in circuits.items()}
    rows = []
    for (scheme, seed, m, k), c in sorted(circuits.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        row: dict[str, Any] = {
            "scheme": scheme,
            "seed": seed,
            "operand_digits": m,
            "digit": k,
            "n_edges": c.n_edges,
            "score_total": float(sum(abs(x) for _, _, x in c.edges())),
            "edge_share": c.n_edges / c.n_edges_total,
            "faithfulness": c.faithfulness,
            "agreement": c.agreement,
            "clean_logit_diff": c.metrics.get("clean_logit_diff", float("nan")),
            "corrupted_logit_diff": c.metrics.get("corrupted_logit_diff", float("nan")),
            "cpr": c.metrics.get("cpr", float("nan")),
            "cmd": c.metrics.get("cmd", float("nan")),
            "random_cpr": c.metrics.get("random", {}).get("cpr", float("nan")),
            "random_cmd": c.metrics.get("random", {}).get("cmd", float("nan")),
            "operand_readers": ", ".join(operand_readers(c, task)),
        }
        ids = {j: roles[(scheme, seed, n, j)] for j in range(n + 1) if (scheme, seed, n, j) in roles}
        if m is not None and m > n and k >= n and ids:
            analogue = n if k == m else n - 1
            row["analogue_digit"] = analogue
            ov = overlap(roles[(scheme, seed, m, k)], ids[analogue]) if analogue in ids else {}
            row.update({f"reuse_{name}": v for name, v in ov.items()})
            best = max(ids, key=lambda j: overlap(roles[(scheme, seed, m, k)], ids[j])["weighted"])
            row["best_id_digit"] = best
            row["best_reuse_weighted"] = overlap(roles[(scheme, seed, m, k)], ids[best])["weighted"]
        rows.append(row)
    return pd.DataFrame(rows)


def seed_similarity(
    circuits: Mapping[Key, Circuit],
    task: Task,
    scheme: str,
    operand_digits: int,
    digit: int,
    head_agnostic: bool = True,
) -> pd.DataFrame:
    """Seeds x seeds weighted Jaccard of the circuits of one scheme, length and digit (role edges;
    heads dropped by default, since seeds number their heads differently)."""
    chosen = {
        seed: role_edges(c, task, head_agnostic)
        for (s, seed, m, k), c in circuits.items()
        if s == scheme and m == operand_digits and k == digit
    }
    seeds = sorted(chosen)
    values = np.array([[overlap(chosen[i], chosen[j])["weighted"] for j in seeds] for i in seeds])
    return pd.DataFrame(values, index=pd.Index(seeds, name="seed"), columns=seeds)
