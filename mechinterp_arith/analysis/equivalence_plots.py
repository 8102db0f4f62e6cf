"""The study's equivalence figures as plotly figures (offline; nothing loads from a CDN).

(a) :func:`relation_maps`: heatmaps over an (a, b) grid spanning ID and OOD operands of the true
    result, the equivalent-relation result ``f(a mod 10^n, b mod 10^n)`` and the model's output.
(b) :func:`class_distributions` / :func:`class_probability_figure`: for an ID input and members
    of its OOD class (``a + i·10^n, b + j·10^n``), the model's probability of each digit at each
    answer position, and the total-variation distance of each member's distributions from the
    representative's.

Probabilities are taken **along each input's own greedy path**: the answer tokens fed back are
the ones the model generated for that input (what it does when it answers), not the true answer
(teacher forcing with the true answer would feed members and representative different prefixes
and confound the comparison).

>>> from mechinterp_arith import load
>>> ckpt = load("add3")
>>> fig = relation_maps(ckpt)                       # three heatmaps: true, equivalent, model
>>> fig = class_probability_figure(ckpt, 349, 705)  # representative + 3 OOD members + TV bars
"""

from __future__ import annotations

from dataclasses import dataclass

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
from ..core.numbers import OperandsLike, Values, as_operands
from ..core.positions import answer_positions


def relation_grid(ckpt: Checkpoint, hi: int | None = None, points: int = 100) -> dict[str, np.ndarray]:
    """Values of the true, equivalent and model results on a ``points x points`` grid of (a, b)
    from 0 to ``hi`` (default 2·10^n: half ID, half OOD). Returns arrays [points(b), points(a)]
    keyed ``"a"``, ``"b"`` (axes), ``"true"``, ``"equivalent"``, ``"model"``."""
    task = ckpt.task
    hi = 2 * 10**task.digits if hi is None else int(hi)
    if not 2 <= points <= 1000:
        raise ValueError(f"points must be between 2 and 1000, got {points}")
    if not 1 < hi <= 10**task.width:
        raise ValueError(f"hi={hi} must be in (1, 10^W={10**task.width}]")
    if hi <= 2**24:  # float32 holds every integer below 2^24: the grid the figures were drawn on
        axis = as_operands(torch.unique(torch.linspace(0, hi - 1, points).round().long()))
    else:  # wider: the same spacing in exact integers
        axis = as_operands(sorted({(hi - 1) * i // (points - 1) for i in range(points)}))
    A, B = np.meshgrid(axis, axis, indexing="xy")  # rows: b, columns: a
    a, b = data.ordered(task, A.reshape(-1), B.reshape(-1))
    shape = A.shape
    return {
        "a": axis,
        "b": axis,
        "true": task.apply(a, b).reshape(shape),
        "equivalent": task.equivalent_answer(a, b).reshape(shape),
        "model": generate(ckpt.model, task, a, b).answers.reshape(shape),
    }


def relation_maps(ckpt: Checkpoint, hi: int | None = None, points: int = 100, contour: bool = False) -> go.Figure:
    """(a) Side-by-side maps of the true result, the equivalent result and the model's output.

    Dashed lines mark the ID boundary 10^n. ``contour=True`` draws contours instead of heatmaps.
    """
    g = relation_grid(ckpt, hi, points)
    titles = ("true: " + ckpt.task.describe(), f"equivalent: {ckpt.task.equivalent_description()}", "model output")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.04)
    zmax = float(max(g["true"].max(), g["equivalent"].max(), g["model"].max()))
    Trace = go.Contour if contour else go.Heatmap
    for col, key in enumerate(("true", "equivalent", "model"), start=1):
        fig.add_trace(
            Trace(
                x=g["a"],
                y=g["b"],
                z=g[key],
                name=key,
                zmin=0,
                zmax=zmax,
                coloraxis="coloraxis",
                hovertemplate="a=%{x}<br>b=%{y}<br>" + key + "=%{z}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        for axis in ("x", "y"):
            line = dict(type="line", line=dict(dash="dash", color="white", width=1))
            N = 10**ckpt.task.digits
            if axis == "x":
                fig.add_shape(**line, x0=N, x1=N, y0=g["b"][0], y1=g["b"][-1], row=1, col=col)
            else:
                fig.add_shape(**line, y0=N, y1=N, x0=g["a"][0], x1=g["a"][-1], row=1, col=col)
        fig.update_xaxes(title_text="a", row=1, col=col)
    fig.update_yaxes(title_text="b", row=1, col=1)
    fig.update_layout(
        title=f"{ckpt.name}: true vs equivalent vs model (ID below 10^{ckpt.task.digits})",
        coloraxis=dict(colorscale="Viridis", cmin=0, cmax=zmax),
        height=420,
        width=1200,
    )
    return fig


@dataclass
class ClassDistributions:
    """Answer-digit distributions of an ID representative and members of its OOD class."""

    a: Values  # [k] row 0 is the representative
    b: Values
    outputs: Values
    probs: Float[Tensor, "k answer digit"]  # softmax over the 10 digits, answer position (units first)
    tv: pd.DataFrame  # one row per member: a, b, output, tv per answer position, tv_mean


@torch.inference_mode()
def answer_probabilities(
    ckpt: Checkpoint, a: OperandsLike, b: OperandsLike
) -> tuple[Values, Float[Tensor, "k answer digit"]]:
    """The greedy answers and, at each answer position, the softmax over digits that chose it
    (along each input's own greedy path; hooked bridge forward, fixed-length formats)."""
    task = ckpt.task
    if not task.fixed_length:
        raise ValueError("answer probabilities need a fixed-length (padded) format")
    a, b = as_operands(a), as_operands(b)
    gen = generate(ckpt.model, task, a, b)
    tokens = gen.tokens.to(ckpt.device)
    logits = ckpt.model(tokens[:, :-1])
    probs = logits[:, answer_positions(task), :10].float().softmax(-1).cpu()  # answer digit k at k
    return gen.answers, probs


def class_distributions(
    ckpt: Checkpoint,
    a: int,
    b: int,
    members: tuple[OperandsLike, OperandsLike] | None = None,
    k: int = 3,
    seed: int = 0,
) -> ClassDistributions:
    """Probabilities for the ID pair ``(a, b)`` and its OOD members (given as ``(ma, mb)`` or drawn
    with :func:`ood_class_members`), and each member's total-variation distance
    ``0.5 · sum_d |p_member(d) - p_rep(d)|`` from the representative, per answer position."""
    task = ckpt.task
    ma, mb = (
        data.class_members(task, a, b, k, seed)
        if members is None
        else (as_operands(members[0]), as_operands(members[1]))
    )
    if members is not None:
        ra, rb = task.id_representative(ma, mb)
        if not bool(((ra == a) & (rb == b)).all()):
            raise ValueError(f"every member must have the ID representative ({a}, {b}) (operands mod 10^{task.digits})")
    all_a, all_b = np.concatenate([as_operands(a), ma]), np.concatenate([as_operands(b), mb])
    outputs, probs = answer_probabilities(ckpt, all_a, all_b)
    tv = 0.5 * (probs[1:] - probs[:1]).abs().sum(-1)  # [members, answer]
    df = pd.DataFrame({"a": ma, "b": mb, "output": outputs[1:]})
    for pos in range(task.answer_width):
        df[f"tv_{pos}"] = tv[:, pos].numpy()
    df["tv_mean"] = tv.mean(1).numpy()
    return ClassDistributions(all_a, all_b, outputs, probs, df)


def class_probability_figure(
    ckpt: Checkpoint,
    a: int,
    b: int,
    members: tuple[OperandsLike, OperandsLike] | None = None,
    k: int = 3,
    seed: int = 0,
) -> go.Figure:
    """(b) One digits x answer-positions heatmap per input (representative first), then the
    total-variation distance of each member from the representative, per answer position."""
    d = class_distributions(ckpt, a, b, members, k, seed)
    n_in = len(d.a)
    titles = [
        f"{'ID ' if i == 0 else ''}{int(x)}, {int(y)} → {int(o)}"
        for i, (x, y, o) in enumerate(zip(d.a, d.b, d.outputs))
    ]
    fig = make_subplots(rows=1, cols=n_in + 1, subplot_titles=titles + ["TV distance from ID"], horizontal_spacing=0.03)
    A = ckpt.task.answer_width
    positions = [f"10^{p}" for p in range(A)]
    for i in range(n_in):
        fig.add_trace(
            go.Heatmap(
                z=d.probs[i].T.numpy(),
                x=positions,
                y=list(range(10)),
                zmin=0,
                zmax=1,
                coloraxis="coloraxis",
                name=titles[i],
                hovertemplate="position %{x}<br>digit %{y}<br>p=%{z:.3f}<extra></extra>",
            ),
            row=1,
            col=i + 1,
        )
        fig.update_xaxes(title_text="answer position", row=1, col=i + 1)
    for _, row in d.tv.iterrows():
        fig.add_trace(
            go.Bar(x=positions, y=[row[f"tv_{p}"] for p in range(A)], name=f"TV {int(row.a)}, {int(row.b)}"),
            row=1,
            col=n_in + 1,
        )
    fig.update_yaxes(title_text="digit", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=n_in + 1)
    fig.update_layout(
        title=f"{ckpt.name}: answer-digit probabilities (greedy path) of an ID input and its OOD class",
        coloraxis=dict(colorscale="Blues", cmin=0, cmax=1),
        height=380,
        width=300 * (n_in + 1),
        barmode="group",
    )
    return fig


def relation_by_length_figure(table: pd.DataFrame) -> go.Figure:
    """Exact match, the truncated relation's coverage and the best relation's coverage against the
    operand length m, with 95% Wilson intervals as error bars (``table``: a
    :func:`~mechinterp_arith.analysis.relation_by_length.relations_by_length` table)."""
    fig = go.Figure()
    m = [int(x) for x in table.index]
    truncated = table.attrs.get("truncated_relation", "truncated relation")
    for key, name in (("exact", "exact"), ("truncated", f"= {truncated}"), ("best_coverage", "best relation")):
        y = table[key].to_numpy()
        fig.add_trace(
            go.Scatter(
                x=m,
                y=y,
                name=name,
                mode="lines+markers",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": table[f"{key}_hi"].to_numpy() - y,
                    "arrayminus": y - table[f"{key}_lo"].to_numpy(),
                },
                text=table["best"] if key == "best_coverage" else None,
            )
        )
    fig.update_layout(
        xaxis={"title": "operand length m (digits)", "dtick": 1},
        yaxis={"title": "share of answers", "range": [-0.02, 1.02]},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
