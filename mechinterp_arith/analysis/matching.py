"""Activation matching: does an OOD input's residual stream match that of its ID representative?

For each OOD pair ``(a, b)`` and its representative ``(a mod 10^n, b mod 10^n)``, compare the
residual stream state by state and position by position: cosine similarity and relative L2
distance ``|x_ood - x_rep| / |x_rep|``; as a baseline, the cosine similarity between the
representatives of different pairs (how alike any two inputs' streams are). The two inputs differ only in the extra digits' tokens;
the question is whether the difference there is carried to the answer positions or whether the
streams re-converge. Answer slots are teacher-forced with the same tokens in both runs: the
representative's answer by default (``answers="representative"``), or each run's own greedy
answer (``answers="greedy"``).

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> oa, ob = data.ood_both(ckpt.task, 4, 500)
>>> res = match_activations(ckpt, oa, ob)
>>> res.cosine.shape                                 # [states, positions]
(8, 15)
>>> fig = res.figure()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.decoding import generate
from ..core.numbers import OperandsLike, as_operands
from ..core.positions import answer_positions, position_labels
from .activations import (
    DEFAULT_BATCH,
    collect,
    input_tokens,
    residual_hooks,
)
from .choices import DEFAULT_HOOK, MATCH_ANSWERS


@dataclass
class MatchResult:
    """Mean cosine similarity and relative L2 distance per state x position (OOD vs representative)."""

    hooks: list[str]
    positions: list[int]
    roles: list[str]
    cosine: Float[np.ndarray, "state pos"]
    rel_l2: Float[np.ndarray, "state pos"]
    token_differs: Float[np.ndarray, " pos"]  # share of pairs whose input token differs at the position
    baseline_cosine: Float[np.ndarray, "state pos"]  # representatives vs other (shuffled) representatives
    answer_positions: list[int]
    answers: str
    n: int
    prompt_len: int

    @property
    def differing_positions(self) -> list[int]:
        """Prompt positions where the OOD and representative tokens differ (the extra digits)."""
        return [p for p, d in zip(self.positions, self.token_differs) if d > 0 and p < self.prompt_len]

    def frame(self) -> pd.DataFrame:
        rows = []
        for i, h in enumerate(self.hooks):
            for j, p in enumerate(self.positions):
                rows.append(
                    {
                        "hook": h,
                        "position": p,
                        "role": self.roles[j],
                        "token_differs": float(self.token_differs[j]),
                        "answer_position": p in self.answer_positions,
                        "cosine": float(self.cosine[i, j]),
                        "rel_l2": float(self.rel_l2[i, j]),
                    }
                )
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        diff = [self.positions.index(p) for p in self.differing_positions]
        ans = [self.positions.index(p) for p in self.answer_positions if p in self.positions]
        per_state = {}
        for i, h in enumerate(self.hooks):
            per_state[h] = {
                "cosine_at_differing_positions": float(self.cosine[i, diff].mean()) if diff else float("nan"),
                "cosine_at_answer_positions": float(self.cosine[i, ans].mean()) if ans else float("nan"),
                "rel_l2_at_differing_positions": float(self.rel_l2[i, diff].mean()) if diff else float("nan"),
                "rel_l2_at_answer_positions": float(self.rel_l2[i, ans].mean()) if ans else float("nan"),
                "baseline_cosine_at_answer_positions": float(self.baseline_cosine[i, ans].mean())
                if ans
                else float("nan"),
            }
        return {
            "n": self.n,
            "teacher_forced_answers": self.answers,
            "positions": self.positions,
            "roles": self.roles,
            "differing_positions": self.differing_positions,
            "answer_positions": self.answer_positions,
            "token_differs": [round(float(x), 4) for x in self.token_differs],
            "by_state": per_state,
            "cosine": {h: [round(float(x), 4) for x in row] for h, row in zip(self.hooks, self.cosine)},
            "rel_l2": {h: [round(float(x), 4) for x in row] for h, row in zip(self.hooks, self.rel_l2)},
        }

    def figure(self) -> go.Figure:
        """Heatmaps of cosine similarity and relative L2 distance (states x positions)."""
        cols = [f"{p}:{r}{'*' if p in self.differing_positions else ''}" for p, r in zip(self.positions, self.roles)]
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=["cosine similarity", "relative L2 distance"], shared_yaxes=True
        )
        for j, (z, scale) in enumerate([(self.cosine, "RdBu"), (self.rel_l2, "Viridis")]):
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    x=cols,
                    y=self.hooks,
                    colorscale=scale,
                    showscale=False,
                    text=np.round(z, 2),
                    texttemplate="%{text}",
                ),
                row=1,
                col=j + 1,
            )
        fig.update_layout(
            title=f"OOD vs ID representative (n={self.n}; * = differing tokens; answers: {self.answers})",
            yaxis_autorange="reversed",
        )
        return fig


@torch.inference_mode()
def match_activations(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    hooks: Sequence[str] | None = None,
    answers: str = "representative",
    batch_size: int = DEFAULT_BATCH,
) -> MatchResult:
    """Compare each pair's activations with those of its representative at every position, one
    batch of ``batch_size`` pairs at a time (memory is bounded by ``batch_size``, not ``len(a)``).

    ``hooks`` default: every residual-stream state then ``ln_final.hook_out``. ``answers``:
    "representative" (both runs read the representative's true answer) or "greedy" (each run
    reads the model's own greedy answer to its input).
    """
    task = ckpt.task
    if answers not in MATCH_ANSWERS:
        raise ValueError(f"unknown answers {answers!r} for matching; choose one of {', '.join(MATCH_ANSWERS)}")
    a, b = as_operands(a), as_operands(b)
    hooks = list(hooks) if hooks is not None else residual_hooks(ckpt.model) + [DEFAULT_HOOK]
    n, cosine = len(a), torch.nn.functional.cosine_similarity
    # float64 sums over pairs ([state, pos] and [pos] once a batch is added; a zero scalar before)
    cos_sum = rel_sum = base_sum = tok_sum = torch.zeros((), dtype=torch.float64)
    first: dict[str, Tensor] | None = None  # the first and the latest representative rows (the baseline's neighbours)
    previous: dict[str, Tensor] | None = None
    for i in range(0, n, batch_size):  # one batch of pairs at a time: memory is bounded by batch_size, not n
        ca, cb = a[i : i + batch_size], b[i : i + batch_size]
        ra, rb = task.id_representative(ca, cb)
        if answers == "representative":
            ans_x = ans_y = task.apply(ra, rb)
        else:
            ans_x = generate(ckpt.model, task, ca, cb, batch_size).answers
            ans_y = generate(ckpt.model, task, ra, rb, batch_size).answers
        x = collect(ckpt, ca, cb, hooks, None, answers=ans_x, batch_size=batch_size)
        y = collect(ckpt, ra, rb, hooks, None, answers=ans_y, batch_size=batch_size)
        tok_sum = tok_sum + (input_tokens(ckpt, ca, cb, ans_x) != input_tokens(ckpt, ra, rb, ans_y)).double().sum(0)
        # baseline: each representative against the one before it (the first against the last, below)
        before = {h: y[h][:-1] if previous is None else torch.cat([previous[h], y[h][:-1]]) for h in hooks}
        after = {h: y[h][1:] if previous is None else y[h] for h in hooks}
        cos_sum = cos_sum + torch.stack([cosine(x[h], y[h], dim=-1).double().sum(0) for h in hooks])
        rel_sum = rel_sum + torch.stack(
            [((x[h] - y[h]).norm(dim=-1) / y[h].norm(dim=-1).clamp(min=1e-12)).double().sum(0) for h in hooks]
        )
        base_sum = base_sum + torch.stack([cosine(after[h], before[h], dim=-1).double().sum(0) for h in hooks])
        first = first if first is not None else {h: y[h][:1] for h in hooks}
        previous = {h: y[h][-1:] for h in hooks}
    if first is not None and previous is not None:
        base_sum = base_sum + torch.stack([cosine(first[h], previous[h], dim=-1).double().sum(0) for h in hooks])
    cos, rel, base = ((t / max(n, 1)).float().numpy() for t in (cos_sum, rel_sum, base_sum))
    positions = list(range(task.n_ctx))
    return MatchResult(
        hooks,
        positions,
        position_labels(task),
        cos,
        rel,
        (tok_sum / max(n, 1)).float().numpy(),
        base,
        answer_positions(task),
        answers,
        len(a),
        task.prompt_len,
    )


def match_ood(
    ckpt: Checkpoint, n: int = 1000, ood_digits: int | None = None, answers: str = "representative", seed: int = 0
) -> MatchResult:
    """:func:`match_activations` on ``n`` pairs with both operands ``ood_digits`` (default n+1) digits long;
    :class:`~mechinterp_arith.core.errors.NotApplicable` when the format holds no longer operand,
    ValueError for a length that is not out of distribution or does not fit."""
    task = ckpt.task
    m = data.require_ood_digits(task, ood_digits)
    data.check_count(n, "n")
    oa, ob = data.ood_both(task, m, n, seed=seed)
    return match_activations(ckpt, oa, ob, answers=answers)
