"""Residual-stream PCA: how well a label (e.g. the units digit of the result) separates into clusters.

Activations at one hook x position are projected on their principal components (scikit-learn
``PCA``, centred, not whitened); separability of a label is the accuracy of nearest-centroid
classification in the top-k components (in-sample) and the silhouette score there.
The default setting is the study's Fig. 4: the final LayerNorm output (with its scale and bias;
no folding) at the position that predicts the units digit, coloured by the units digit.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.random_pairs(ckpt.task, 2000, max_value=10**4)      # operands in [0, 10^(n+1))
>>> res = residual_pca(ckpt, a, b)                                  # ln_final.hook_out @ units
>>> res.nearest_centroid_accuracy > 0.9, res.coords.shape
(True, (2000, 3))
>>> fig = res.figure(dims=3)                                        # a plotly Figure
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float, Int
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestCentroid
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from ..core.checkpoint import Checkpoint
from ..core.labels import DEFAULT_LABEL, label_values, parse_label
from ..core.numbers import OperandsLike, Values, as_operands
from ..core.positions import answer_positions, predicted_digit, resolve_position
from .activations import Answers, collect, residual_hooks
from .choices import DEFAULT_HOOK, DEFAULT_K

SILHOUETTE_SAMPLE = 4000  # silhouette is O(n^2): scored on a fixed random subsample of this size


def separability(x: Float[np.ndarray, "n k"], y: Int[np.ndarray, " n"], seed: int = 0) -> tuple[float, float]:
    """``(nearest_centroid_accuracy, silhouette)`` of labels ``y`` in coordinates ``x`` (NaN when
    fewer than two classes)."""
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2 or len(classes) >= len(y):
        return float("nan"), float("nan")
    acc = float((NearestCentroid().fit(x, y).predict(x) == y).mean())
    sample = min(len(y), SILHOUETTE_SAMPLE)
    try:
        sil = float(silhouette_score(x, y, sample_size=sample if sample < len(y) else None, random_state=seed))
    except ValueError:  # the subsample drew a single class
        sil = float("nan")
    return acc, sil


@dataclass
class PCAResult:
    """PCA of one hook x position, with separability of one label in the top-k components."""

    hook: str
    position: int
    label: str
    k: int
    coords: Float[np.ndarray, "n c"]  # projections on the top max(k, 3) components
    labels: Int[np.ndarray, " n"]
    explained_variance_ratio: Float[np.ndarray, " components"]  # all min(n, d) components, descending
    nearest_centroid_accuracy: float
    silhouette: float
    pca: PCA = field(repr=False)
    activations: Float[np.ndarray, "n d"] = field(repr=False)
    operands: tuple[Values, Values] = field(repr=False)  # the pairs (Python ints)

    def summary(self, n_ratios: int = 10) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "position": self.position,
            "label": self.label,
            "k": self.k,
            "n": len(self.labels),
            "explained_variance_ratio": [round(float(r), 6) for r in self.explained_variance_ratio[:n_ratios]],
            "nearest_centroid_accuracy": self.nearest_centroid_accuracy,
            "silhouette": self.silhouette,
        }

    def figure(self, dims: int = 2, max_points: int = 5000) -> go.Figure:
        """Scatter of the first 2 or 3 components, coloured by the label."""
        return scatter_figure(
            self.coords,
            self.labels,
            self.explained_variance_ratio,
            dims,
            max_points,
            title=f"PCA of {self.hook} @ position {self.position}, coloured by {self.label} "
            f"(nearest-centroid acc {self.nearest_centroid_accuracy:.3f}, "
            f"silhouette {self.silhouette:.3f})",
            operands=self.operands,
        )


def scatter_figure(
    coords: Float[np.ndarray, "n k"],
    labels: Sequence[Any] | np.ndarray,
    ratios: Sequence[float] | np.ndarray,
    dims: int = 2,
    max_points: int = 5000,
    title: str = "",
    operands: tuple[np.ndarray, np.ndarray] | None = None,
) -> go.Figure:
    """A 2-D or 3-D plotly scatter, one trace per label value (first ``max_points`` points)."""
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    coords, labels = coords[:max_points], np.asarray(labels)[:max_points]
    fig = go.Figure()
    for value in np.unique(labels):
        m = labels == value
        text = None
        if operands is not None:
            text = [f"a={x}, b={y}" for x, y in zip(operands[0][:max_points][m], operands[1][:max_points][m])]
        common = dict(mode="markers", name=str(value), text=text, marker=dict(size=3 if dims == 3 else 4))
        if dims == 2:
            fig.add_trace(go.Scattergl(x=coords[m, 0], y=coords[m, 1], **common))
        else:
            fig.add_trace(go.Scatter3d(x=coords[m, 0], y=coords[m, 1], z=coords[m, 2], **common))
    axis = [f"PC{i + 1} ({ratios[i]:.1%})" for i in range(dims)]
    if dims == 2:
        fig.update_layout(xaxis_title=axis[0], yaxis_title=axis[1])
    else:
        fig.update_layout(scene=dict(xaxis_title=axis[0], yaxis_title=axis[1], zaxis_title=axis[2]))
    fig.update_layout(title=title, legend_title="label")
    return fig


def fit_pca(
    acts: Float[np.ndarray, "n d"], labels: Int[np.ndarray, " n"], k: int = DEFAULT_K, seed: int = 0
) -> tuple[PCA, Float[np.ndarray, "n k"], float, float]:
    """``(pca, coords [n, max(k, 3)], accuracy, silhouette)``: PCA on all components, separability in the top k."""
    n, d = acts.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k={k} components: need 1 <= k <= min(samples, features) = {min(n, d)}")
    pca = PCA(n_components=min(n, d), svd_solver="full", random_state=seed).fit(acts)
    coords = pca.transform(acts)
    acc, sil = separability(coords[:, :k], labels, seed)
    return pca, coords[:, : max(k, min(3, coords.shape[1]))], acc, sil


def flatten(x: Tensor) -> np.ndarray:
    """Activations ``[batch, ...]`` as a float64 array ``[batch, features]`` (what PCA is fitted on)."""
    return x.reshape(len(x), -1).numpy().astype(np.float64)


def residual_pca(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    hook: str = DEFAULT_HOOK,
    position: int | str | None = None,
    label: str = DEFAULT_LABEL,
    k: int = DEFAULT_K,
    answers: Answers = "true",
    model: TransformerBridge | None = None,
    seed: int = 0,
) -> PCAResult:
    """PCA of ``hook`` at ``position`` (default: the position predicting the units digit) over the
    pairs ``(a, b)``, separability of ``label``. ``answers`` fills answer slots for positions past
    the prompt; ``model`` overrides ``ckpt.model`` (e.g. a training snapshot)."""
    a, b = as_operands(a), as_operands(b)
    parse_label(ckpt.task, label)
    pos = resolve_position(ckpt.task, position)
    acts = collect(ckpt, a, b, [hook], [pos], answers=answers, model=model)[hook]
    y = label_values(ckpt.task, a, b, label).numpy()
    x = flatten(acts)
    pca, coords, acc, sil = fit_pca(x, y, k, seed)
    return PCAResult(hook, pos, label, k, coords, y, pca.explained_variance_ratio_, acc, sil, pca, x, (a, b))


# ---- all layers x answer positions ----------------------------------------------------------------
@dataclass
class SitePCA:
    """Separability per hook x position: ``frame`` has one row per cell."""

    frame: pd.DataFrame

    def figure(self, value: str = "nearest_centroid_accuracy") -> go.Figure:
        """Heatmap of ``value`` (rows: hooks, columns: positions)."""
        if value not in self.frame.columns:
            raise ValueError(f"unknown column {value!r}; choose one of {', '.join(self.frame.columns)}")
        table = self.frame.pivot(index="hook", columns="position", values=value)
        table = table.loc[list(dict.fromkeys(self.frame["hook"]))]
        cols = [f"{p} ({l})" for p, l in dict(zip(self.frame["position"], self.frame["label"])).items()]
        fig = go.Figure(
            go.Heatmap(
                z=table.values,
                x=cols,
                y=list(table.index),
                colorscale="Viridis",
                text=np.round(table.values, 3),
                texttemplate="%{text}",
            )
        )
        fig.update_layout(
            title=f"{value} by hook and position (label in brackets)",
            xaxis_title="position (label)",
            yaxis_title="hook",
            yaxis_autorange="reversed",
        )
        return fig


def pca_each_site(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    hooks: Sequence[str] | None = None,
    positions: Sequence[int | str] | None = None,
    label: str | None = None,
    k: int = DEFAULT_K,
    answers: Answers = "true",
    seed: int = 0,
) -> SitePCA:
    """Every hook x position in one forward pass per batch.

    Defaults: every residual-stream state plus ``ln_final.hook_out``; every answer-predicting
    position; label = the answer digit each position predicts (``ans<k>``), or ``label`` for all.
    """
    task = ckpt.task
    hooks = list(hooks) if hooks is not None else residual_hooks(ckpt.model) + [DEFAULT_HOOK]
    pos = answer_positions(task) if positions is None else [resolve_position(task, p) for p in positions]
    labels = {}
    for p in pos:
        if label is not None:
            labels[p] = label
        elif predicted_digit(task, p) is None:
            raise ValueError(f"position {p} predicts no answer digit; pass a label for it")
        else:
            labels[p] = f"ans{predicted_digit(task, p)}"
        parse_label(task, labels[p])
    a, b = as_operands(a), as_operands(b)
    acts = collect(ckpt, a, b, hooks, pos, answers=answers)
    rows = []
    for h in hooks:
        for j, p in enumerate(pos):
            y = label_values(task, a, b, labels[p]).numpy()
            pca, _, acc, sil = fit_pca(flatten(acts[h][:, j]), y, k, seed)
            rows.append(
                {
                    "hook": h,
                    "position": p,
                    "label": labels[p],
                    "nearest_centroid_accuracy": acc,
                    "silhouette": sil,
                    f"explained_variance_top{k}": float(pca.explained_variance_ratio_[:k].sum()),
                }
            )
    return SitePCA(pd.DataFrame(rows))


def pca_sweep(*args: Any, **kwargs: Any) -> SitePCA:
    """Deprecated name of :func:`pca_each_site` ("sweep" names the sweep package's grids of training runs)."""
    warnings.warn("pca_sweep() is renamed pca_each_site()", DeprecationWarning, stacklevel=2)
    return pca_each_site(*args, **kwargs)
