"""Logit lens: what each residual-stream state already predicts at each answer position.

Every distinct residual state (``blocks.l.hook_resid_pre``, ``blocks.l.hook_resid_mid``, the last
``hook_resid_post``) is put through the model's real final LayerNorm (statistics recomputed per
state, weight and bias applied) and unembedding by TransformerLens 4.3's own
``transformer_lens.tools.analysis.logit_lens`` (per-row targets, full-vocabulary ranks); the last
state reproduces the model's output exactly. What is specific to arithmetic stays here: which
positions predict which answer digit, the target digits (true, or the equivalent relation's) and
the aggregation over a set of operand pairs.

For each answer digit k (units first) the lens reads the position that predicts it and scores a
target digit: its mean probability, mean rank (0 = top) and top-1 rate. On OOD inputs the targets
are the digit of the equivalent relation ``(a mod 10^n) op (b mod 10^n)`` and the true digit.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> lens = id_ood_logit_lens(ckpt, n=500)
>>> lens.frame.columns.tolist()[:4]
['set', 'target', 'state', 'layer']
>>> fig = lens.figure()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor
from transformer_lens.tools.analysis import logit_lens as tl_logit_lens
from transformer_lens.utilities import get_act_name

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.model import model_device
from ..core.numbers import OperandsLike, Values, as_operands
from ..core.positions import answer_positions
from .activations import DEFAULT_BATCH, Answers, input_tokens, residual_hooks


def _state_name(label: str, n_layers: int) -> str:
    """The hook of a state TL's ``accumulated_resid`` labels ``0_pre``, ``1_mid``, ... or ``final_post``."""
    if label == "final_post":
        return get_act_name("resid_post", n_layers - 1)
    layer, kind = label.split("_")
    return get_act_name(f"resid_{kind}", int(layer))


@dataclass
class LogitLensResult:
    """``frame``: one row per (set, target, state, answer digit) with mean_prob, mean_rank, top1."""

    frame: pd.DataFrame
    final_max_abs_diff: float  # |P_lens(target) at the last state - P_model(target)|, max over everything scored
    answers: dict[str, Any]  # which answer tokens were teacher-forced, per set

    def table(self, value: str = "mean_prob", set_: str = "id", target: str = "true") -> pd.DataFrame:
        """States x answer digits for one set and target."""
        f = self.frame[(self.frame["set"] == set_) & (self.frame["target"] == target)]
        if f.empty:
            raise ValueError(f"no rows for set={set_!r}, target={target!r}")
        t = f.pivot(index="state", columns="digit", values=value)
        return t.loc[list(dict.fromkeys(f["state"]))]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"final_max_abs_diff": self.final_max_abs_diff, "teacher_forced_answers": self.answers}
        for (s, t), _ in self.frame.groupby(["set", "target"], sort=False):
            key = f"{s}_{t}"
            out[key] = {
                v: {state: [round(float(x), 4) for x in row] for state, row in self.table(v, str(s), str(t)).iterrows()}
                for v in ("mean_prob", "mean_rank")
            }
        return out

    def figure(self, value: str = "mean_prob") -> go.Figure:
        """One heatmap per (set, target): states x answer digits."""
        pairs = list(dict.fromkeys(zip(self.frame["set"], self.frame["target"])))
        fig = make_subplots(
            rows=1, cols=len(pairs), subplot_titles=[f"{s}: {t} digit" for s, t in pairs], shared_yaxes=True
        )
        for j, (s, t) in enumerate(pairs):
            tab = self.table(value, s, t)
            fig.add_trace(
                go.Heatmap(
                    z=tab.values,
                    x=[f"digit {d}" for d in tab.columns],
                    y=list(tab.index),
                    coloraxis="coloraxis",
                    text=np.round(tab.values, 3),
                    texttemplate="%{text}",
                ),
                row=1,
                col=j + 1,
            )
        fig.update_layout(
            title=f"Logit lens: {value} of the target digit (digit 0 = units)",
            coloraxis=dict(colorscale="Viridis"),
            yaxis_autorange="reversed",
        )
        return fig


@torch.inference_mode()
def logit_lens(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    targets: dict[str, OperandsLike] | None = None,
    answers: Answers = "true",
    set_name: str = "id",
    batch_size: int = DEFAULT_BATCH,
) -> LogitLensResult:
    """The lens on pairs ``(a, b)``; ``targets`` maps a name to the integer answers whose digits are
    scored (default ``{"true": a op b}``); ``answers`` fills the answer slots (teacher forcing)."""
    task, model = ckpt.task, ckpt.model
    a, b = as_operands(a), as_operands(b)
    target_values: dict[str, Values] = (
        {"true": task.apply(a, b)}
        if targets is None
        else {k: as_operands(v, f"target {k}") for k, v in targets.items()}
    )
    tokens = input_tokens(ckpt, a, b, answers, batch_size)
    pos = answer_positions(task)
    A = task.answer_width
    device = model_device(model)
    hooks = residual_hooks(model)
    sums: dict[str, Tensor] = {}
    labels: list[str] = []
    max_diff = 0.0
    model.eval()
    for i in range(0, len(tokens), batch_size):
        logits, cache = model.run_with_cache(tokens[i : i + batch_size].to(device), names_filter=hooks)
        model_probs = logits[:, pos].softmax(-1)  # [batch, digit, vocab]
        for name, values in target_values.items():
            digit = task.answer_digits(values[i : i + batch_size]).clamp(min=0).to(device)  # [batch, digit]
            # TL's lens: every residual state through the real ln_final and unembedding, per-row targets
            read = tl_logit_lens(cache, incl_mid=True, positions=pos, targets=digit, return_type="probs")
            labels = read.labels
            ranks = read.readout.target_ranks
            assert ranks is not None  # targets were given
            p, rank = read.values[..., 0].float(), ranks[..., 0].float()  # [state, batch, digit]
            max_diff = max(
                max_diff, (p[-1] - model_probs.gather(-1, digit.unsqueeze(-1)).squeeze(-1)).abs().max().item()
            )
            part = torch.stack([p.sum(1), rank.sum(1), (rank == 0).float().sum(1)]).cpu()  # [3, state, digit]
            sums[name] = sums[name] + part if name in sums else part
    rows = []
    for name, s in sums.items():
        s = s / len(a)
        for j, lab in enumerate(labels):
            for k in range(A):
                rows.append(
                    {
                        "set": set_name,
                        "target": name,
                        "state": _state_name(lab, model.cfg.n_layers),
                        "layer": j,
                        "digit": k,
                        "position": pos[k],
                        "mean_prob": s[0, j, k].item(),
                        "mean_rank": s[1, j, k].item(),
                        "top1": s[2, j, k].item(),
                    }
                )
    return LogitLensResult(pd.DataFrame(rows), max_diff, {set_name: answers if isinstance(answers, str) else "given"})


def id_ood_logit_lens(
    ckpt: Checkpoint,
    n: int = 2000,
    ood_digits: int | None = None,
    ood_answers: Answers = "greedy",
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
) -> LogitLensResult:
    """The lens on ``n`` random ID pairs (target: the true digit, true answer teacher-forced) and on
    ``n`` pairs with both operands ``ood_digits`` (default n+1) digits long (targets: the equivalent
    relation's digit and the true digit; ``ood_answers`` teacher-forced, default the model's own greedy
    answer)."""
    task = ckpt.task
    data.check_count(n, "n")
    ia, ib = data.random_pairs(task, n, seed=seed)
    res = logit_lens(ckpt, ia, ib, answers="true", set_name="id", batch_size=batch_size)
    if ood_digits is None and data.default_ood_digits(task) is None:
        return res  # the format holds no longer operands
    m = data.require_ood_digits(task, ood_digits)
    oa, ob = data.ood_both(task, m, n, seed=seed)
    ood = logit_lens(
        ckpt,
        oa,
        ob,
        {"equivalent": task.equivalent_answer(oa, ob), "true": task.apply(oa, ob)},
        answers=ood_answers,
        set_name=f"ood{m}",
        batch_size=batch_size,
    )
    return LogitLensResult(
        pd.concat([res.frame, ood.frame], ignore_index=True),
        max(res.final_max_abs_diff, ood.final_max_abs_diff),
        {**res.answers, **ood.answers},
    )
