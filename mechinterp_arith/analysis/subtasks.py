"""Arithmetic meaning for circuit nodes: Quirke & Barez's addition sub-tasks and per-node necessity.

Quirke & Barez ("Understanding Addition in Transformers", 2023) split n-digit addition into
sub-tasks: BaseAdd (the digit sum mod 10), MakeCarry1 (a place's digits sum to 10 or more),
UseCarry1 (a digit adds the carry from the place below) and UseSum9 (digits summing to 9 pass a
carry on). Here each is a family of prompt pairs for answer digit k whose answers differ in digit
k *only through that sub-task* (c = carry into a place, s_i = a_i + b_i):

==========  ==========================================================  ===============
family      clean and corrupted prompts                                 defined for
==========  ==========================================================  ===============
BaseAdd     a_k or b_k changes; no carry into k in either               k < n
UseCarry1   a_k or b_k changes; s_{k-1} >= 10 in both (carry into k)    1 <= k < n
MakeCarry1  s_{k-1} >= 10 (clean) vs <= 8 (corrupted): the carry flips  1 <= k <= n
UseSum9     s_{k-1} = 9 in both; s_{k-2} >= 10 vs <= 8: the carry       2 <= k <= n
            cascades through place k-1
==========  ==========================================================  ===============

A node's *necessity* for a family is the share of the clean-to-corrupted logit-difference gap at
digit k that is lost when the node's output is replaced by its corrupted value (all its outgoing
edges ablated, everything else clean): 1 = the model cannot tell the pairs apart without it.

>>> from mechinterp_arith import load
>>> ckpt = load("add3")
>>> pairs = subtask_pairs(ckpt.task, "MakeCarry1", k=3, n=32)       # the carry into the thousands
>>> from transformer_lens.tools.analysis import Node
>>> nec = node_necessity(ckpt, 3, [Node("attn_head_out", 12, 0, 2)], subtasks=("MakeCarry1",))
>>> bool(nec.necessity.max() > 0.2)                   # L0H2 at ans2 makes the carry into the thousands
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens.tools.analysis.attribution_patching import Node

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.labels import label_values
from ..core.numbers import Values, digit_at, with_digit
from ..core.positions import answer_logit_pos, check_digit, require_fixed_length
from ..core.seeding import generator
from ..core.tasks import Task
from .attribution import plain_forward_of
from .discovery import Circuit, circuit_metric_values
from .edge_forward import PairRuns
from .edge_graph import EdgeGraph, node_label
from .prompt_pairs import PromptPairs, make_pairs

SUBTASKS = ("BaseAdd", "MakeCarry1", "UseCarry1", "UseSum9")
NECESSARY = 0.2  # a node is tagged with a sub-task when at least this share of its gap is lost without it


def subtask_pairs(
    task: Task, subtask: str, k: int, n: int = 64, seed: int = 0, operand: str | None = None
) -> PromptPairs:
    """Pairs for answer digit ``k`` that differ there only through ``subtask`` (table above);
    ``operand`` ("a" or "b") makes every pair change that operand's digit (default: either, at random).

    Raises :class:`NotApplicable` for tasks other than addition and for digits where the family
    is undefined (e.g. BaseAdd of the carry digit k = n, which no operand digit feeds).
    """
    require_fixed_length(task)
    check_digit(task, k)
    if task.op != "add":
        raise NotApplicable(f"Quirke & Barez's sub-tasks are defined for addition; {task.name} is {task.op}")
    if subtask not in SUBTASKS:
        raise ValueError(f"unknown sub-task {subtask!r}; choose one of {', '.join(SUBTASKS)}")
    lo, hi = {
        "BaseAdd": (0, task.digits - 1),
        "UseCarry1": (1, task.digits - 1),
        "MakeCarry1": (1, task.digits),
        "UseSum9": (2, task.digits),
    }[subtask]
    if not lo <= k <= hi:
        raise NotApplicable(f"{subtask} is defined for answer digits {lo}..{hi} of {task.name}, not {k}")
    if operand not in (None, "a", "b"):
        raise ValueError(f"operand must be 'a', 'b' or None, got {operand!r}")
    g = generator(seed, "subtask_pairs", subtask, k, operand or "either")
    a, b = data.random_pairs(task, 64 * n, g=g)  # UseSum9 keeps ~4% of random pairs

    def s(place: int, x: Values = a, y: Values = b) -> Int[Tensor, " n"]:
        return digit_at(x, place) + digit_at(y, place)

    use_a = torch.rand(len(a), generator=g) < 0.5 if operand is None else torch.full(a.shape, operand == "a")
    if subtask in ("BaseAdd", "UseCarry1"):  # change a_k or b_k
        if subtask == "BaseAdd":  # no carry into place k (none into the units)
            ok = label_values(task, a, b, f"carry{k}") == 0 if k else torch.ones(len(a), dtype=torch.bool)
        else:
            ok = s(k - 1) >= 10
        shift = torch.randint(1, 10, a.shape, generator=g)
        xa = np.where(use_a.numpy(), with_digit(a, k, (digit_at(a, k) + shift) % 10), a)
        xb = np.where(use_a.numpy(), b, with_digit(b, k, (digit_at(b, k) + shift) % 10))
    else:  # flip the carry made at place p: its sum >= 10 (clean) becomes <= 8 (corrupted)
        p = k - 1 if subtask == "MakeCarry1" else k - 2
        ok = s(p) >= 10 if subtask == "MakeCarry1" else (s(p) >= 10) & (s(k - 1) == 9)
        other = torch.where(use_a, digit_at(b, p), digit_at(a, p))
        ok &= other <= 8
        new = (torch.rand(len(a), generator=g) * (9 - other).clamp_min(1)).long()  # new + other <= 8
        xa = np.where(use_a.numpy(), with_digit(a, p, new), a)
        xb = np.where(use_a.numpy(), b, with_digit(b, p, new))
    idx = torch.nonzero(ok).squeeze(1)[:n].numpy()
    if len(idx) < n:
        raise NotApplicable(f"only {len(idx)} of {n} {subtask} pairs found for digit {k} of {task.name}")
    pairs = make_pairs(task, a[idx], b[idx], xa[idx], xb[idx], f"{subtask} pairs for answer digit {k}")
    assert bool((pairs.clean_digits[:, k] != pairs.corrupted_digits[:, k]).all()), "a family pair leaves digit k alone"
    return pairs


def node_necessity(
    ckpt: Checkpoint,
    digit: int,
    nodes: Sequence[Node | tuple[Node, ...]],
    n: int = 64,
    seed: int = 0,
    subtasks: tuple[str, ...] = SUBTASKS,
    operand: str | None = None,
) -> pd.DataFrame:
    """Necessity of writer nodes (embed / attn_head_out / mlp_out at a position; a tuple of
    nodes is ablated together) for each sub-task family of answer digit ``digit``: one row per
    (node, subtask) with ``necessity`` (share of the gap lost with the node's output corrupted;
    0 for nodes the pairs cannot change) and ``n_pairs``. Families undefined for the digit are
    left out (``attrs["skipped"]``); ``operand`` as in :func:`subtask_pairs`."""
    rows, skipped = [], {}
    groups = [nd if isinstance(nd, tuple) else (nd,) for nd in nodes]
    for subtask in subtasks:
        try:
            pairs = subtask_pairs(ckpt.task, subtask, digit, n=n, seed=seed, operand=operand).to(ckpt.device)
        except NotApplicable as e:
            skipped[subtask] = str(e)
            continue
        plain = plain_forward_of(ckpt, pairs.corrupted_tokens)
        graph = EdgeGraph(plain.L, plain.H, pairs.clean_tokens.shape[1])
        runs = PairRuns.build(
            plain, pairs.clean_tokens, pairs.corrupted_tokens, end=answer_logit_pos(ckpt.task, digit) + 1
        )
        full = graph.feeds.expand(graph.n_pos, -1, -1)
        masks = [full, torch.zeros_like(full)]
        for group in groups:
            mask = full.clone()
            for node in group:
                mask[node.position, :, graph.writer_index(node)] = False  # every edge out of the node
            masks.append(mask)
        values, _ = circuit_metric_values(plain, graph, runs, torch.stack(masks), pairs, digit)
        gap = (values[0] - values[1]).sum()
        for group, v in zip(groups, values[2:]):
            first = group[0]
            rows.append(
                {
                    "node": "+".join(node_label(nd) for nd in group),
                    "kind": first.kind,
                    "layer": first.layer,
                    "head": first.head,
                    "position": first.position,
                    "subtask": subtask,
                    "necessity": float((values[0] - v).sum() / gap),
                    "n_pairs": len(pairs),
                }
            )
    df = pd.DataFrame(rows)
    df.attrs.update(digit=digit, skipped=skipped)
    return df


def subtask_tags(
    ckpt: Checkpoint, circuit: Circuit, n: int = 64, seed: int = 0, threshold: float = NECESSARY
) -> pd.DataFrame:
    """For each writer node of a discovered :class:`~mechinterp_arith.analysis.discovery.Circuit`,
    its necessity for each sub-task of the circuit's digit (wide: one column per family) and
    ``tags``, the families it is necessary for (necessity >= ``threshold``), strongest first."""
    nodes = [nd for nd in circuit.nodes() if nd.kind != "logits"]
    long = node_necessity(ckpt, circuit.digit, nodes, n=n, seed=seed)
    out = pd.DataFrame(
        [
            {"node": node_label(nd), "kind": nd.kind, "layer": nd.layer, "head": nd.head, "position": nd.position}
            for nd in nodes
        ]
    )
    fams = []
    if not long.empty:
        wide = long.pivot(index="node", columns="subtask", values="necessity")
        fams = [f for f in SUBTASKS if f in wide.columns]
        out = out.join(wide[fams], on="node")
    out["tags"] = [[f for f in sorted(fams, key=lambda f: -row[f]) if row[f] >= threshold] for _, row in out.iterrows()]
    out.attrs.update(digit=circuit.digit, skipped=long.attrs.get("skipped", {}), threshold=threshold)
    return out
