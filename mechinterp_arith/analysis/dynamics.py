"""Training dynamics of representations: PCA separability over the snapshots saved in training.

The study's Fig. 4 shows units-digit clusters forming over four checkpoints; this repeats the
PCA (and optionally the OOD projection) on every snapshot ``ckpt.snapshot_steps()``.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")                                   # snapshots at steps 100..1000
>>> a, b = data.random_pairs(ckpt.task, 1000, max_value=10**4)
>>> dyn = pca_dynamics(ckpt, a, b, steps=[100, 500, 1000])
>>> list(dyn.frame.columns)[:3]
['step', 'nearest_centroid_accuracy', 'silhouette']
>>> fig = dyn.figure(); panels = dyn.scatter_figure()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..core.checkpoint import Checkpoint, CheckpointError
from ..core.labels import DEFAULT_LABEL
from ..core.numbers import OperandsLike
from .choices import DEFAULT_HOOK, DEFAULT_K
from .pca import PCAResult, residual_pca
from .projection import ood_projection


@dataclass
class DynamicsResult:
    """One row per snapshot step (``frame``) and the PCA of each step (``results``)."""

    frame: pd.DataFrame
    results: dict[int, PCAResult] = field(repr=False)

    def figure(self) -> go.Figure:
        """Separability (and OOD shares, when computed) against the training step."""
        fig = go.Figure()
        for col in self.frame.columns:
            if col != "step":
                fig.add_trace(go.Scatter(x=self.frame["step"], y=self.frame[col], mode="lines+markers", name=col))
        fig.update_layout(title="Representation structure during training", xaxis_title="training step")
        return fig

    def scatter_figure(self, steps: Sequence[int] | None = None, max_points: int = 2000) -> go.Figure:
        """2-D PCA panels for up to four steps (default: four spread over training), as in Fig. 4."""
        all_steps = sorted(self.results)
        if steps is None:
            idx = sorted({round(i * (len(all_steps) - 1) / 3) for i in range(4)})
            steps = [all_steps[i] for i in idx]
        missing = [s for s in steps if s not in self.results]
        if missing:
            raise ValueError(f"no result for steps {missing}; have {all_steps}")
        fig = make_subplots(rows=1, cols=len(steps), subplot_titles=[f"step {s}" for s in steps])
        for j, s in enumerate(steps):
            panel = self.results[s].figure(dims=2, max_points=max_points)
            for tr in panel.data:
                tr.showlegend = j == 0
                tr.legendgroup = tr.name
                fig.add_trace(tr, row=1, col=j + 1)
        r = self.results[steps[-1]]
        fig.update_layout(title=f"PCA of {r.hook} @ position {r.position} by {r.label} during training")
        return fig


def pca_dynamics(
    ckpt: Checkpoint,
    a: OperandsLike,
    b: OperandsLike,
    steps: Sequence[int] | None = None,
    hook: str = DEFAULT_HOOK,
    position: int | str | None = None,
    label: str = DEFAULT_LABEL,
    k: int = DEFAULT_K,
    id_pairs: tuple[OperandsLike, OperandsLike] | None = None,
    ood_pairs: tuple[OperandsLike, OperandsLike] | None = None,
) -> DynamicsResult:
    """:func:`~mechinterp_arith.analysis.pca.residual_pca` on each snapshot (default: all of them); with
    ``id_pairs`` and ``ood_pairs`` also the OOD projection shares per step."""
    available = ckpt.snapshot_steps()
    if not available:
        raise CheckpointError(f"checkpoint {ckpt.name} holds no training snapshots (train with --snapshot-every)")
    steps = available if steps is None else list(steps)
    rows, results = [], {}
    for step in steps:
        model = ckpt.load_snapshot(step)  # CheckpointError names a missing step
        res = residual_pca(ckpt, a, b, hook, position, label, k, model=model)
        results[step] = res
        row = {
            "step": step,
            "nearest_centroid_accuracy": res.nearest_centroid_accuracy,
            "silhouette": res.silhouette,
            f"explained_variance_top{k}": float(res.explained_variance_ratio[:k].sum()),
        }
        if id_pairs is not None and ood_pairs is not None:
            proj = ood_projection(ckpt, id_pairs, ood_pairs, hook, position, label, k, model=model).summary()
            row["ood_on_equivalent_cluster"] = proj["ood_on_equivalent_cluster"]
            row["ood_on_true_cluster"] = proj["ood_on_true_cluster"]
        rows.append(row)
    return DynamicsResult(pd.DataFrame(rows), results)
