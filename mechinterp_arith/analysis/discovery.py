"""Circuits found automatically and verified exactly: ``discover(ckpt, digit=k)``.

The search (documented in docs/circuits.md):

1. **Rank** every edge of TL's graph (:mod:`~mechinterp_arith.analysis.edge_graph`) by the size
   of its EAP-IG score (:func:`~mechinterp_arith.analysis.attribution.attribute`) on ``n``
   search pairs whose answers differ only in digit k (metric: the logit difference there).
2. **Threshold** (ACDC-style, on the ranking): the circuits made of the top-m edges, for a
   geometric grid of m and then a linear grid below the first that passes, are each closed
   (edges no kept path connects to a differing input or to the logits are dropped:
   :meth:`EdgeGraph.prune_dangling`) and ablated exactly, all at once
   (:func:`~mechinterp_arith.analysis.edge_forward.ablated_logits`); the smallest circuit whose
   faithfulness on the search pairs reaches ``target`` is kept.
3. **Verify** on held-out pairs (another random stream, search pairs removed): faithfulness =
   the share of the clean-to-corrupted metric gap the circuit recovers with every other edge
   ablated to the corrupted run (TL's ``faithfulness``, batched), ``sum(circuit - corrupted) /
   sum(clean - corrupted)`` over pairs, with a bootstrap 95% interval (scipy); and the share of
   pairs whose circuit predicts the clean digit k, with its Wilson interval.

>>> from mechinterp_arith import load
>>> circuit = discover(load("add3"), digit=1)
>>> circuit.faithfulness >= 0.9 and circuit.n_edges <= 0.1 * circuit.n_edges_total
True
>>> circuit.to_json()["edges"][0]["writer"]           # TL Node fields: MLP0 at b1's position
{'kind': 'mlp_out', 'position': 8, 'layer': 0, 'head': None}
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.stats import bootstrap
from torch import Tensor
from transformer_lens.tools.analysis.attribution_patching import Node

from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.plain_forward import PlainGPT
from ..core.positions import answer_logit_pos, check_digit
from ..core.seeding import derive_seed, rng
from ..core.tasks import Task
from .attribution import attribute, plain_forward_of
from .circuit_metrics import FRACTIONS, cmd, cpr, fraction_sizes, random_scores, top_edges
from .edge_forward import PairRuns, ablated_logits
from .edge_graph import EdgeGraph
from .equivalence import wilson_interval
from .metrics import logit_diff_metric
from .prompt_pairs import PromptPairs, differ_in_answer_digit, make_pairs

TARGET = 0.95  # faithfulness the search asks of a circuit on the search pairs
GRID = 24  # circuit sizes tried per round
ROWS = 2048  # variants x pairs per forward pass


@dataclass
class Circuit:
    """A circuit for answer digit ``digit``: kept edges (``mask`` [pos, reader, writer] of
    ``graph``), their ranking scores, and its exact faithfulness on held-out pairs."""

    digit: int
    graph: EdgeGraph
    mask: Bool[Tensor, "pos reader writer"]
    scores: Float[Tensor, "pos reader writer"]
    faithfulness: float
    faithfulness_ci95: tuple[float, float]
    agreement: float  # share of held-out pairs whose circuit run predicts the clean digit
    agreement_ci95: tuple[float, float]
    pairs: int
    seconds: float
    search: dict[str, Any] = field(default_factory=dict)
    operand_digits: int | None = None  # the pairs' operand length (None: ID pairs)
    metrics: dict[str, Any] = field(default_factory=dict)  # MIB's curve, cpr, cmd and the random baseline

    @property
    def cpr(self) -> float:
        """MIB's circuit performance ratio of the ranking on held-out pairs (higher is better)."""
        return float(self.metrics["cpr"])

    @property
    def cmd(self) -> float:
        """MIB's circuit-model distance of the ranking on held-out pairs (lower is better)."""
        return float(self.metrics["cmd"])

    def __eq__(self, other: object) -> bool:
        """Equal circuits: the same JSON (kept edges, their scores to 6 decimals, figures) and graph."""
        return isinstance(other, Circuit) and torch.equal(self.mask, other.mask) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    @property
    def n_edges_total(self) -> int:
        return self.graph.n_edges

    def edges(self) -> list[tuple[Node, Node, float]]:
        """Kept edges as TL ``(writer, reader, score)`` triples, largest |score| first (the form
        TL's ``faithfulness`` accepts)."""
        rows = self.graph.order(self.mask)
        out = [
            (
                self.graph.writer_node(int(w), int(p)),
                self.graph.reader_node(int(r), int(p)),
                float(self.scores[p, r, w]),
            )
            for p, r, w in rows
        ]
        return sorted(out, key=lambda e: -abs(e[2]))

    def nodes(self) -> list[Node]:
        """Writer nodes with a kept outgoing edge, and the logits node, in graph order."""
        seen: dict[Node, None] = {}
        for writer, reader, _ in self.edges():
            seen.setdefault(writer, None)
            if reader.kind == "logits":
                seen.setdefault(reader, None)
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``mechinterp-arith discover --json`` (docs/circuits.md)."""
        return {
            "digit": self.digit,
            "edges": [
                {"writer": dataclasses.asdict(w), "reader": dataclasses.asdict(r), "score": round(s, 6)}
                for w, r, s in self.edges()
            ],
            "n_edges_total": self.n_edges_total,
            "faithfulness": round(self.faithfulness, 4),
            "faithfulness_ci95": [round(x, 4) for x in self.faithfulness_ci95],
            "pairs": self.pairs,
            "seconds": round(self.seconds, 2),
            "agreement": round(self.agreement, 4),
            "agreement_ci95": [round(x, 4) for x in self.agreement_ci95],
            "search": self.search,
            "operand_digits": self.operand_digits,
            "cpr": self.metrics.get("cpr"),
            "cmd": self.metrics.get("cmd"),
            "metrics": self.metrics,
            "graph": {"n_layers": self.graph.n_layers, "n_heads": self.graph.n_heads, "n_pos": self.graph.n_pos},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Circuit:
        """The circuit of :meth:`to_json`'s output (``to_json`` of it gives ``data`` back). Scores
        of edges outside the circuit are not in the JSON: they read as 0."""
        try:
            graph = EdgeGraph(**{k: int(data["graph"][k]) for k in ("n_layers", "n_heads", "n_pos")})
            edges = [(Node(**e["writer"]), Node(**e["reader"]), float(e["score"])) for e in data["edges"]]
            mask = graph.mask_of(edges)
            scores = torch.zeros(mask.shape, dtype=torch.float64)
            for writer, reader, score in edges:
                scores[writer.position, graph.reader_index(reader), graph.writer_index(writer)] = score
            if int(data["n_edges_total"]) != graph.n_edges:
                raise ValueError(f"n_edges_total {data['n_edges_total']} is not the graph's {graph.n_edges}")
            return cls(
                int(data["digit"]),
                graph,
                mask,
                scores,
                float(data["faithfulness"]),
                (float(data["faithfulness_ci95"][0]), float(data["faithfulness_ci95"][1])),
                float(data["agreement"]),
                (float(data["agreement_ci95"][0]), float(data["agreement_ci95"][1])),
                int(data["pairs"]),
                float(data["seconds"]),
                dict(data.get("search", {})),
                None if data.get("operand_digits") is None else int(data["operand_digits"]),
                dict(data.get("metrics", {})),
            )
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"not a discover --json circuit: missing or malformed {e}") from None


def circuit_metric_values(
    plain: PlainGPT,
    graph: EdgeGraph,
    runs: PairRuns,
    masks: Bool[Tensor, "S pos reader writer"],
    pairs: PromptPairs,
    digit: int,
) -> tuple[Tensor, Tensor]:
    """Per-pair logit differences [S, B] and predicted digits [S, B] at digit ``digit``'s
    position with every edge outside each of ``masks`` (full-length [S, n_pos, R, W]) ablated."""
    pos = answer_logit_pos(pairs.task, digit)
    clean = pairs.clean_digits[:, digit].to(runs.clean.device)
    corr = pairs.corrupted_digits[:, digit].to(runs.clean.device)
    keep = masks[:, runs.start : runs.end].float()
    per_chunk = max(1, ROWS // runs.batch)
    diffs, preds = [], []
    with torch.inference_mode():
        for i in range(0, len(keep), per_chunk):
            lg = ablated_logits(plain, graph, runs, keep[i : i + per_chunk])[:, :, pos]  # [S, B, vocab]
            idx = torch.arange(lg.shape[1])
            diffs.append(lg[:, idx, clean] - lg[:, idx, corr])
            preds.append(lg.argmax(-1))
    return torch.cat(diffs), torch.cat(preds)


def faithfulness_of(
    values: Float[Tensor, " B"],
    clean: Float[Tensor, " B"],
    corrupted: Float[Tensor, " B"],
    seed: int = 0,
    n_resamples: int = 2000,
) -> tuple[float, tuple[float, float]]:
    """``sum(values - corrupted) / sum(clean - corrupted)`` and its bootstrap 95% interval over pairs."""
    num, den = (values - corrupted).double().cpu().numpy(), (clean - corrupted).double().cpu().numpy()
    point = float(num.sum() / den.sum())
    res = bootstrap(
        (num, den),
        lambda a, b, axis=-1: a.sum(axis) / b.sum(axis),
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        rng=rng(seed),
    )
    return point, (float(res.confidence_interval.low), float(res.confidence_interval.high))


def _held_out_pairs(
    task: Task, digit: int, n: int, seed: int, search: PromptPairs, operand_digits: int | None = None
) -> PromptPairs:
    held_seed = derive_seed(seed, "discover-held-out")
    pairs = differ_in_answer_digit(task, digit, n=n + len(search), seed=held_seed, operand_digits=operand_digits)
    seen = {
        (int(a), int(b), int(x), int(y))
        for a, b, x, y in zip(search.clean_a, search.clean_b, search.corrupted_a, search.corrupted_b)
    }
    keep = torch.tensor(
        [
            (int(a), int(b), int(x), int(y)) not in seen
            for a, b, x, y in zip(pairs.clean_a, pairs.clean_b, pairs.corrupted_a, pairs.corrupted_b)
        ]
    )
    idx = torch.nonzero(keep).squeeze(1)[:n]
    return make_pairs(
        task,
        pairs.clean_a[idx],
        pairs.clean_b[idx],
        pairs.corrupted_a[idx],
        pairs.corrupted_b[idx],
        pairs.description + " (held out)",
    )


@dataclass
class EdgeScores:
    """Step 1 of the search (:func:`score_edges`): EAP-IG scores of every edge of ``graph`` for
    answer digit ``digit`` on the search ``pairs``, with the exact edge forward's runs of them."""

    digit: int
    pairs: PromptPairs
    graph: EdgeGraph
    runs: PairRuns
    plain: PlainGPT
    scores: Float[Tensor, "pos reader writer"]
    ig_steps: int
    operand_digits: int | None
    seed: int
    seconds: float

    @property
    def sinks(self) -> Bool[Tensor, " pos"]:
        """The position whose logits predict the digit (the only sink of a circuit)."""
        sinks = torch.zeros(self.graph.n_pos, dtype=torch.bool)
        sinks[answer_logit_pos(self.pairs.task, self.digit)] = True
        return sinks


def score_edges(
    ckpt: Checkpoint,
    digit: int,
    n: int = 48,
    seed: int = 0,
    ig_steps: int = 5,
    operand_digits: int | None = None,
) -> EdgeScores:
    """Step 1: score every edge of TL's graph by EAP-IG (``ig_steps`` path steps) on ``n`` pairs of
    ``operand_digits``-digit operands (default: ID pairs) whose answers differ only in ``digit``."""
    t0 = time.perf_counter()
    check_digit(ckpt.task, digit)
    pairs = differ_in_answer_digit(ckpt.task, digit, n=n, seed=seed, operand_digits=operand_digits).to(ckpt.device)
    att = attribute(ckpt, pairs, logit_diff_metric(pairs, digit), ig_steps)
    plain = plain_forward_of(ckpt, pairs.corrupted_tokens)
    return EdgeScores(
        digit,
        pairs,
        att.graph,
        att.runs,
        plain,
        att.edge_scores,
        ig_steps,
        operand_digits,
        seed,
        time.perf_counter() - t0,
    )


def select_circuit(
    scored: EdgeScores, target: float = TARGET
) -> tuple[Bool[Tensor, "pos reader writer"], list[list[float]]]:
    """Step 2: the smallest closed top-m circuit of ``scored``'s ranking whose faithfulness on the
    search pairs reaches ``target``, and the curve ``[[m, edges, faithfulness], ...]`` of the sizes
    tried. Raises NotApplicable when the clean run does not beat the corrupted one."""
    found = _threshold_search(
        scored.plain, scored.graph, scored.runs, scored.pairs, scored.digit, scored.scores, scored.sinks, target
    )
    if found[0] is None:
        raise NotApplicable(
            f"the model does not prefer the clean answer digit {scored.digit} on the clean inputs (mean "
            f"logit difference {found[1]:.3f} <= its corrupted value): there is no gap for a circuit to keep"
        )
    return found


def verify_circuit(
    ckpt: Checkpoint,
    scored: EdgeScores,
    mask: Bool[Tensor, "pos reader writer"],
    n_heldout: int = 256,
    search: dict[str, Any] | None = None,
) -> Circuit:
    """Step 3: ``mask``'s exact faithfulness (bootstrap 95% CI) and digit agreement on ``n_heldout``
    held-out pairs (the search pairs removed), and MIB's ``cpr``/``cmd`` of ``scored``'s ranking and
    of a seeded random ranking on them (:mod:`~mechinterp_arith.analysis.circuit_metrics`)."""
    t0 = time.perf_counter()
    graph, digit, seed = scored.graph, scored.digit, scored.seed
    held = _held_out_pairs(ckpt.task, digit, n_heldout, seed, scored.pairs, scored.operand_digits).to(ckpt.device)
    held_runs = PairRuns.build(scored.plain, held.clean_tokens, held.corrupted_tokens, end=scored.runs.end)
    full = graph.feeds.expand(graph.n_pos, -1, -1)
    rand = random_scores(graph, seed)
    sizes = fraction_sizes(graph)
    curves = [
        graph.prune_dangling(top_edges(graph, s, m), held_runs.differing, scored.sinks, held_runs.rewired)
        for s in (scored.scores, rand)
        for m in sizes
    ]
    same_size = top_edges(graph, rand, int(mask.sum()))
    masks = torch.stack([mask, full, torch.zeros_like(mask), same_size, *curves])
    values, preds = circuit_metric_values(scored.plain, graph, held_runs, masks, held, digit)
    f, ci = faithfulness_of(values[0], values[1], values[2], seed=derive_seed(seed, "discover-bootstrap"))
    gap = float((values[1] - values[2]).sum())
    faith = [float((v - values[2]).sum()) / gap for v in values[4:]]
    ours, baseline = faith[: len(sizes)], faith[len(sizes) :]
    hits = int((preds[0] == held.clean_digits[:, digit].to(preds.device)).sum())
    metrics = {
        "clean_logit_diff": round(float(values[1].mean()), 4),  # held-out means: faithfulness divides by their gap
        "corrupted_logit_diff": round(float(values[2].mean()), 4),
        "fractions": list(FRACTIONS),
        "edges": sizes,
        "faithfulness": [round(x, 4) for x in ours],
        "cpr": round(cpr(FRACTIONS, ours), 4),
        "cmd": round(cmd(FRACTIONS, ours), 4),
        "random": {
            "seed": seed,
            "faithfulness": [round(x, 4) for x in baseline],
            "cpr": round(cpr(FRACTIONS, baseline), 4),
            "cmd": round(cmd(FRACTIONS, baseline), 4),
            "same_size_faithfulness": round(float((values[3] - values[2]).sum()) / gap, 4),
        },
    }
    return Circuit(
        digit,
        graph,
        mask,
        scored.scores,
        f,
        ci,
        hits / len(held),
        wilson_interval(hits, len(held)),
        len(held),
        scored.seconds + time.perf_counter() - t0,
        search or {},
        scored.operand_digits,
        metrics,
    )


def discover(
    ckpt: Checkpoint,
    digit: int,
    n: int = 48,
    n_heldout: int = 256,
    seed: int = 0,
    ig_steps: int = 5,
    target: float = TARGET,
    operand_digits: int | None = None,
) -> Circuit:
    """Find and verify a circuit for answer digit ``digit``: :func:`score_edges`, then
    :func:`select_circuit`, then :func:`verify_circuit` (see the module docstring).

    ``n`` search pairs rank and threshold the edges; ``n_heldout`` other pairs verify the result.
    ``operand_digits`` M: pairs of M-digit operands (M may exceed the trained length), else ID pairs.
    Raises :class:`~mechinterp_arith.core.errors.NotApplicable` for digits the task cannot
    change alone (e.g. the always-zero top digits of a sum).
    """
    scored = score_edges(ckpt, digit, n=n, seed=seed, ig_steps=ig_steps, operand_digits=operand_digits)
    t0 = time.perf_counter()
    try:
        mask, curve = select_circuit(scored, target)
    except NotApplicable as e:
        raise NotApplicable(f"{ckpt.name}: {e}") from None
    scored.seconds += time.perf_counter() - t0
    search = {
        "method": f"EAP-IG ranking ({ig_steps} steps), threshold search on exact ablation",
        "target": target,
        "search_pairs": len(scored.pairs),
        "candidates": int((scored.scores != 0).sum()),
        "curve": curve,
        "seed": seed,
    }
    return verify_circuit(ckpt, scored, mask, n_heldout, search)


def _threshold_search(
    plain: PlainGPT,
    graph: EdgeGraph,
    runs: PairRuns,
    pairs: PromptPairs,
    digit: int,
    scores: Tensor,
    sinks: Tensor,
    target: float,
) -> tuple[Tensor, list[list[float]]] | tuple[None, float]:
    """The smallest closed top-m circuit whose search-pair faithfulness reaches ``target`` and the
    curve of sizes tried; (None, mean gap) when the clean run does not beat the corrupted one."""
    order = torch.argsort(scores.abs().flatten(), descending=True)
    n_cand = int((scores != 0).sum())
    full = graph.feeds.expand(graph.n_pos, -1, -1)
    base, _ = circuit_metric_values(plain, graph, runs, torch.stack([full, torch.zeros_like(full)]), pairs, digit)
    gap = float((base[0] - base[1]).sum())
    if gap <= 0:
        return None, float((base[0] - base[1]).mean())

    def evaluate(sizes: list[int]) -> list[tuple[int, int, float, Tensor]]:
        masks = []
        for m in sizes:
            top = torch.zeros(scores.numel(), dtype=torch.bool)
            top[order[:m]] = True
            masks.append(graph.prune_dangling(top.view_as(scores), runs.differing, sinks, runs.rewired))
        values, _ = circuit_metric_values(plain, graph, runs, torch.stack(masks), pairs, digit)
        faith = ((values - base[1]).sum(-1) / gap).tolist()
        return [(m, int(mk.sum()), f, mk) for m, mk, f in zip(sizes, masks, faith)]

    coarse = sorted({int(x) for x in np.geomspace(1, n_cand, GRID).round()})
    results = evaluate(coarse)
    passing = [i for i, r in enumerate(results) if r[2] >= target]
    if not passing:
        return full.clone(), [[m, e, round(f, 4)] for m, e, f, _ in results]
    i = passing[0]
    if i > 0:
        lo, hi = results[i - 1][0], results[i][0]
        fine = sorted({int(x) for x in np.linspace(lo, hi, GRID + 1).round()} - {lo, hi})
        results += evaluate(fine) if fine else []
    best = min((r for r in results if r[2] >= target), key=lambda r: (r[1], -r[2]))
    curve = sorted([m, e, round(f, 4)] for m, e, f, _ in results)
    return best[3], curve
