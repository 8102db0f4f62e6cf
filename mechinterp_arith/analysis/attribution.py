"""Attribution patching (EAP) and its integrated-gradient form (EAP-IG), batched, against exact patching.

Attribution patching estimates the effect of patching an activation from the corrupted run to
the clean one with a first-order Taylor term, ``(a_clean - a_corrupted) . d(metric)/d(a)``,
the gradient taken on the corrupted run: one forward and backward pass for every node and edge
at once (TL's ``attribution_patch``, one pair at a time; here the whole batch in one pass).
Edges use TL's graph and sign convention (:mod:`~mechinterp_arith.analysis.edge_graph`): the
score of writer -> reader is the writer's clean-minus-corrupted contribution dotted with the
gradient at the reader's input.

EAP-IG (Hanna et al. 2024, "Have faith in faithfulness") replaces the gradient by its average
along the straight path from the corrupted to the clean token embeddings, at
``alpha = k / ig_steps`` for k = 0..ig_steps-1 (so ``ig_steps=1`` is plain EAP, TL's
convention); the steps run as one batch. TransformerLens 4.3 declares ``ig_steps > 1`` but
raises NotImplementedError.

:func:`attribution_agreement` measures both against exact activation patching (the batched
engine) per site family: Spearman rank correlation over the sites where the runs differ, and
the sites where the linear estimate misses most.

>>> from mechinterp_arith import load
>>> from mechinterp_arith.analysis.metrics import logit_diff_metric
>>> from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit
>>> ckpt = load("add3")
>>> pairs = differ_in_answer_digit(ckpt.task, k=1, n=16)
>>> att = attribute(ckpt, pairs, logit_diff_metric(pairs, 1), ig_steps=5)
>>> att.edge_scores.shape                              # [pos, reader, writer]: TL's graph
torch.Size([15, 31, 13])
>>> att.node_scores("z").shape                         # [layer, pos, head], as patch_each_site's
torch.Size([3, 15, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float
from scipy.stats import spearmanr
from torch import Tensor

from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.plain_forward import PlainGPT, checked_plain_forward, has_hooks, unsupported_reasons
from .edge_forward import PairRuns, reader_gradients
from .edge_graph import EdgeGraph
from .metrics import logit_diff_metric, normalised_effect
from .patching import patch_each_site
from .prompt_pairs import PromptPairs, differ_in_answer_digit

FAMILIES = ("resid_pre", "attn_out", "z", "mlp_out")  # patch_each_site kinds; z = one head's output
MIN_EFFECT = 0.01  # sites compared: exact or estimated normalised effect at least this


def plain_forward_of(ckpt: Checkpoint, probe: Tensor) -> PlainGPT:
    """The checkpoint's checked plain forward, which edge-level analyses run on.

    :class:`NotApplicable` naming the architecture it cannot run (e.g. RMSNorm; every position scheme runs);
    ValueError while hooks are attached or when it does not reproduce the bridge's logits.
    """
    reasons = unsupported_reasons(ckpt.model)
    if reasons:
        raise NotApplicable(
            f"edge-level analyses run on the plain forward, which does not support {', '.join(reasons)}"
        )
    if has_hooks(ckpt.model):
        raise ValueError("hooks are attached to the model; edge-level analyses run without them")
    plain = checked_plain_forward(ckpt.model, probe[:8])
    if plain is None:
        raise ValueError("the plain forward does not reproduce this model's logits; edge-level analyses need it")
    return plain


@dataclass
class Attribution:
    """Attribution scores of one batch of pairs.

    ``edge_scores[p, r, w]``: mean over pairs of writer ``w``'s clean-minus-corrupted
    contribution at position ``p`` dotted with the (path-averaged) metric gradient at reader
    ``r``'s input; 0 off the graph and where the runs agree. ``deltas`` [pos, W, B, D] and
    ``grads`` [pos, R, B, D] are the parts (positions ``runs.start..runs.end-1``).
    """

    graph: EdgeGraph
    runs: PairRuns
    ig_steps: int
    deltas: Tensor
    grads: Tensor
    edge_scores: Float[Tensor, "pos reader writer"]

    def node_scores(self, family: str) -> Tensor:
        """Estimated patching effect (patched minus corrupted metric) per site of a patch_each_site
        kind: resid_pre/attn_out/mlp_out [layer, pos], z [layer, pos, head]."""
        g, runs, graph = self.graph, self.runs, self.graph
        L, H = g.n_layers, g.n_heads
        shape = (L, runs.n_total, H) if family == "z" else (L, runs.n_total)
        out = torch.zeros(shape)
        sl = slice(runs.start, runs.end)
        for l in range(L):
            after = self.grads[:, graph.mlp_reader(l) :].sum(1)  # every reader after layer l's heads
            if family == "resid_pre":
                readers = self.grads[:, graph.attn_readers(l).start :].sum(1)
                delta = self.deltas[:, : graph.head_writer(l, 0)].sum(1)
                out[l, sl] = (delta * readers).sum((-1, -2))
            elif family == "mlp_out":
                later = self.grads[:, graph.mlp_reader(l) + 1 :].sum(1)
                out[l, sl] = (self.deltas[:, graph.mlp_writer(l)] * later).sum((-1, -2))
            else:
                heads = self.deltas[:, graph.head_writer(l, 0) : graph.mlp_writer(l)]  # [pos, H, B, D]
                per_head = (heads * after[:, None]).sum((-1, -2))  # [pos, H]
                out[l, sl] = per_head if family == "z" else per_head.sum(-1)
        return out


def attribute(
    ckpt: Checkpoint, pairs: PromptPairs, metric: Callable[[Tensor], Tensor], ig_steps: int = 1, end: int | None = None
) -> Attribution:
    """EAP (``ig_steps=1``) or EAP-IG edge and node scores for ``pairs`` under ``metric`` (a
    scalar batch mean, e.g. :func:`~mechinterp_arith.analysis.metrics.logit_diff_metric`).
    Positions from ``end`` on (default: one past the last position the metric declares it reads)
    are not computed."""
    if ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
    plain = plain_forward_of(ckpt, pairs.corrupted_tokens)
    read = getattr(metric, "reads_positions", None)
    end = end if end is not None else (max(read) + 1 if read else pairs.clean_tokens.shape[1])
    graph = EdgeGraph(plain.L, plain.H, pairs.clean_tokens.shape[1])
    device = ckpt.device
    runs = PairRuns.build(plain, pairs.clean_tokens.to(device), pairs.corrupted_tokens.to(device), end=end)
    alphas = torch.arange(ig_steps, dtype=torch.float32) / ig_steps
    grads = reader_gradients(plain, graph, runs, metric, alphas).mean(0)  # [pos, R, B, D]
    deltas = runs.clean - runs.corrupted  # [pos, W, B, D]
    scores = torch.zeros(runs.n_total, graph.n_readers, graph.n_writers)
    scores[runs.start : runs.end] = torch.einsum("pwbd,prbd->prw", deltas, grads) * graph.feeds
    return Attribution(graph, runs, ig_steps, deltas, grads, scores)


def attribution_sites(
    ckpt: Checkpoint,
    digits: list[int] | None = None,
    n: int = 64,
    seed: int = 0,
    ig_steps: int = 5,
    families: tuple[str, ...] = FAMILIES,
) -> pd.DataFrame:
    """Exact and estimated patching effects of every site, per answer digit and site family.

    For each digit (default: 0..n), pairs whose answers differ only there; metric: the logit
    difference there. One row per (digit, family, site) where clean and corrupted runs differ and
    the metric can be reached: ``layer``, ``pos``, ``head`` (-1 for layer sites) and the
    normalised effects ``exact`` (batched activation patching), ``EAP`` and ``EAP-IG``
    (``ig_steps`` path steps); 1 = the clean metric restored. Digits a task cannot isolate are
    left out with their reason in ``attrs["skipped"]``.
    """
    from .circuits import circuit_digits

    rows, skipped = [], {}
    for digit in circuit_digits(ckpt.task) if digits is None else digits:
        try:
            pairs = differ_in_answer_digit(ckpt.task, digit, n=n, seed=seed).to(ckpt.device)
        except NotApplicable as e:
            skipped[digit] = str(e)
            continue
        metric = logit_diff_metric(pairs, digit)
        with torch.inference_mode():
            clean_value = float(metric(ckpt.model(pairs.clean_tokens)))
            _, clean_cache = ckpt.model.run_with_cache(pairs.clean_tokens)
        methods = {"EAP": attribute(ckpt, pairs, metric, 1), "EAP-IG": attribute(ckpt, pairs, metric, ig_steps)}
        for family in families:
            sweep = patch_each_site(ckpt.model, pairs.corrupted_tokens, clean_cache, metric, family, by_pos=True)
            base = float(sweep.baseline)
            exact = normalised_effect(sweep.values, clean_value, base)
            est = {
                name: normalised_effect(att.node_scores(family) + base, clean_value, base)
                for name, att in methods.items()
            }
            no_op = sweep.identical if sweep.after_read is None else sweep.identical | sweep.after_read
            for idx in torch.nonzero(~no_op).tolist():
                site = tuple(idx)
                rows.append(
                    {
                        "digit": digit,
                        "family": family,
                        "layer": idx[0],
                        "pos": idx[1],
                        "head": idx[2] if family == "z" else -1,
                        "exact": float(exact[site]),
                        **{name: float(e[site]) for name, e in est.items()},
                    }
                )
    df = pd.DataFrame(rows)
    df.attrs.update(ig_steps=ig_steps, n_pairs=n, skipped=skipped)
    return df


def attribution_agreement(sites: pd.DataFrame, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """How well EAP and EAP-IG rank the sites of :func:`attribution_sites`, per family (digits pooled).

    Compared sites: the exact effect or either estimate reaches ``min_effect`` (ranks among sites
    that change nothing are float noise). One row per (family, method): ``spearman`` and
    ``pearson`` against the exact effects, ``n_sites``, ``max_abs_miss`` (largest |estimate -
    exact|) and ``worst`` (the three sites missed most: digit, layer, pos, head, exact, estimate).
    """
    rows = []
    for family, df in sites.groupby("family", sort=False):
        df = df[df[["exact", "EAP", "EAP-IG"]].abs().max(axis=1) >= min_effect]
        for method in ("EAP", "EAP-IG"):
            miss = (df[method] - df["exact"]).abs()
            worst = df.loc[miss.nlargest(3).index]
            rows.append(
                {
                    "family": family,
                    "method": method,
                    "n_sites": len(df),
                    "spearman": float(spearmanr(df[method], df["exact"]).statistic) if len(df) > 2 else float("nan"),
                    "pearson": float(df[method].corr(df["exact"])) if len(df) > 2 else float("nan"),
                    "max_abs_miss": float(miss.max()) if len(df) else float("nan"),
                    "worst": [
                        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                        for r in worst[["digit", "layer", "pos", "head", "exact", method]].to_dict("records")
                    ],
                }
            )
    return pd.DataFrame(rows)
