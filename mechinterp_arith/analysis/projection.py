"""OOD projection: do out-of-distribution inputs land on the clusters of their ID equivalents?

Fit PCA and label centroids (top-k components) on ID activations, project OOD activations, and
assign each OOD point to its nearest ID centroid. Compare that cluster with the label of the
pair's ID representative ``(a mod 10^n, b mod 10^n)`` (the study's equivalent relation) and with
the label of the true answer. For labels on which the two agree (e.g. the units digit of a sum)
both shares coincide; ``labels_differ`` says on how many points they can be told apart and the
``*_where_differ`` shares compare them there.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> ia, ib = data.random_pairs(ckpt.task, 2000)
>>> oa, ob = data.ood_both(ckpt.task, 4, 2000)
>>> res = ood_projection(ckpt, (ia, ib), (oa, ob), position="ans3", label="ans3")
>>> res.share_equivalent > res.share_true
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float, Int
from sklearn.neighbors import NearestCentroid
from transformer_lens.model_bridge import TransformerBridge

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.labels import DEFAULT_LABEL, label_values, parse_label
from ..core.numbers import OperandsLike, as_operands
from ..core.positions import resolve_position
from ..core.seeding import derive_seed
from ..core.tasks import Task
from .activations import Answers, collect, needs_answer_tokens
from .choices import DEFAULT_HOOK, DEFAULT_K
from .pca import PCAResult, fit_pca, flatten, residual_pca


@dataclass
class ProjectionResult:
    """Nearest-ID-centroid assignment of OOD points (PCA and centroids fitted on ID points)."""

    hook: str
    position: int
    label: str
    k: int
    ood_answers: str
    id_coords: Float[np.ndarray, "n_id c"]
    id_labels: Int[np.ndarray, " n_id"]
    ood_coords: Float[np.ndarray, "n_ood c"]
    assigned: Int[np.ndarray, " n_ood"]  # label of the nearest ID centroid
    equivalent_labels: Int[np.ndarray, " n_ood"]  # label of (a mod 10^n, b mod 10^n)
    true_labels: Int[np.ndarray, " n_ood"]  # label of (a, b)
    id_nearest_centroid_accuracy: float
    id_silhouette: float
    explained_variance_ratio: Float[np.ndarray, " d"] = field(repr=False)

    @property
    def share_equivalent(self) -> float:
        """Share of OOD points on the cluster of their ID representative's label."""
        return float((self.assigned == self.equivalent_labels).mean())

    @property
    def share_true(self) -> float:
        """Share of OOD points on the cluster of their true answer's label."""
        return float((self.assigned == self.true_labels).mean())

    @property
    def differ(self) -> np.ndarray:
        return self.equivalent_labels != self.true_labels

    def summary(self) -> dict[str, Any]:
        d = self.differ
        nan = float("nan")
        return {
            "hook": self.hook,
            "position": self.position,
            "label": self.label,
            "k": self.k,
            "n_id": len(self.id_labels),
            "n_ood": len(self.assigned),
            "ood_answers": self.ood_answers,
            "id_nearest_centroid_accuracy": self.id_nearest_centroid_accuracy,
            "id_silhouette": self.id_silhouette,
            "ood_on_equivalent_cluster": self.share_equivalent,
            "ood_on_true_cluster": self.share_true,
            "labels_differ": float(d.mean()),
            "ood_on_equivalent_cluster_where_differ": float((self.assigned == self.equivalent_labels)[d].mean())
            if d.any()
            else nan,
            "ood_on_true_cluster_where_differ": float((self.assigned == self.true_labels)[d].mean())
            if d.any()
            else nan,
        }

    def figure(self, max_points: int = 3000) -> go.Figure:
        """ID points (small, by label) and OOD points (crosses, coloured by their equivalent label)."""
        fig = go.Figure()
        palette = [
            "#1f77b4",
            "#ff7f0e",
            "#2ca02c",
            "#d62728",
            "#9467bd",
            "#8c564b",
            "#e377c2",
            "#7f7f7f",
            "#bcbd22",
            "#17becf",
        ]
        values = np.unique(np.concatenate([self.id_labels, self.equivalent_labels]))
        colour = {v: palette[i % len(palette)] for i, v in enumerate(values)}
        for v in values:
            m = self.id_labels[:max_points] == v
            if m.any():
                fig.add_trace(
                    go.Scattergl(
                        x=self.id_coords[:max_points][m, 0],
                        y=self.id_coords[:max_points][m, 1],
                        mode="markers",
                        name=f"ID {self.label}={v}",
                        legendgroup=str(v),
                        marker=dict(size=4, color=colour[v], opacity=0.5),
                    )
                )
            m = self.equivalent_labels[:max_points] == v
            if m.any():
                fig.add_trace(
                    go.Scattergl(
                        x=self.ood_coords[:max_points][m, 0],
                        y=self.ood_coords[:max_points][m, 1],
                        mode="markers",
                        name=f"OOD, equivalent {self.label}={v}",
                        legendgroup=str(v),
                        marker=dict(size=6, color=colour[v], symbol="x"),
                    )
                )
        r = self.explained_variance_ratio
        fig.update_layout(
            title=f"OOD projected on ID PCA of {self.hook} @ {self.position}: {self.share_equivalent:.1%} on the "
            f"equivalent cluster, {self.share_true:.1%} on the true-answer cluster",
            xaxis_title=f"PC1 ({r[0]:.1%})",
            yaxis_title=f"PC2 ({r[1]:.1%})",
        )
        return fig


def ood_projection(
    ckpt: Checkpoint,
    id_pairs: tuple[OperandsLike, OperandsLike],
    ood_pairs: tuple[OperandsLike, OperandsLike],
    hook: str = DEFAULT_HOOK,
    position: int | str | None = None,
    label: str = DEFAULT_LABEL,
    k: int = DEFAULT_K,
    ood_answers: Answers = "greedy",
    model: TransformerBridge | None = None,
    seed: int = 0,
) -> ProjectionResult:
    """Project ``ood_pairs`` on the PCA + label centroids of ``id_pairs`` at ``hook`` x ``position``.

    Answer slots (only read for positions past the prompt) hold the true answer for ID pairs and
    ``ood_answers`` for OOD pairs (default: the model's own greedy answer, what it sees when it
    generates).
    """
    task = ckpt.task
    parse_label(task, label)
    pos = resolve_position(task, position)
    ia, ib = map(as_operands, id_pairs)
    oa, ob = map(as_operands, ood_pairs)
    id_acts = flatten(collect(ckpt, ia, ib, [hook], [pos], answers="true", model=model)[hook])
    ood_acts = flatten(collect(ckpt, oa, ob, [hook], [pos], answers=ood_answers, model=model)[hook])
    return project(
        task,
        id_acts,
        (ia, ib),
        ood_acts,
        (oa, ob),
        hook,
        pos,
        label,
        k,
        ood_answers if isinstance(ood_answers, str) else "given",
        seed,
    )


def project(
    task: Task,
    id_acts: Float[np.ndarray, "n_id d"],
    id_pairs: tuple[OperandsLike, OperandsLike],
    ood_acts: Float[np.ndarray, "n_ood d"],
    ood_pairs: tuple[OperandsLike, OperandsLike],
    hook: str,
    position: int,
    label: str,
    k: int = DEFAULT_K,
    ood_answers: str = "given",
    seed: int = 0,
) -> ProjectionResult:
    """The projection from activations already collected (rows aligned with the pairs)."""
    ia, ib = map(as_operands, id_pairs)
    oa, ob = map(as_operands, ood_pairs)
    if len(oa) == 0:
        raise ValueError("no OOD pairs to project")
    ra, rb = task.id_representative(oa, ob)
    y = label_values(task, ia, ib, label).numpy()
    if len(np.unique(y)) < 2:
        raise NotApplicable(
            f"label {label!r} takes a single value ({int(y[0])}) on every ID pair of {task.name}; "
            f"there are no clusters to project onto"
        )
    pca, id_coords, acc, sil = fit_pca(id_acts, y, k, seed)
    ood_coords = pca.transform(ood_acts)
    assigned = NearestCentroid().fit(pca.transform(id_acts)[:, :k], y).predict(ood_coords[:, :k])
    return ProjectionResult(
        hook,
        position,
        label,
        k,
        ood_answers,
        id_coords,
        y,
        ood_coords[:, : id_coords.shape[1]],
        assigned,
        label_values(task, ra, rb, label).numpy(),
        label_values(task, oa, ob, label).numpy(),
        acc,
        sil,
        pca.explained_variance_ratio_,
    )


PROJECTION_KEYS = (
    "ood_on_equivalent_cluster",
    "ood_on_true_cluster",
    "labels_differ",
    "ood_on_equivalent_cluster_where_differ",
    "ood_on_true_cluster_where_differ",
    "n_id",
    "n_ood",
    "id_nearest_centroid_accuracy",
    "id_silhouette",
)


def study_sets(task: Task, n: int = 10_000, n_id: int = 2000, seed: int = 0) -> tuple[data.Pairs, data.Pairs]:
    """The operand pairs of :func:`study_pca`: ``n`` random pairs with each operand in [0, 10^(n+1))
    (n + 1 as far as the format holds it), and ``n_id`` random ID pairs the OOD projection is fitted
    on, from their own stream (``derive_seed(seed, "study_pca", "id")``)."""
    data.check_count(n, "n")
    data.check_count(n_id, "n_id")
    top = data.default_ood_digits(task) or task.digits
    fig4 = data.random_pairs(task, n, seed=seed, max_value=10**top)
    return fig4, data.random_pairs(task, n_id, seed=derive_seed(seed, "study_pca", "id"))


class StudyPCA(NamedTuple):
    """:func:`study_pca`'s result: the PCA, the OOD projection (None when no pair is OOD) and the
    summary ``mechinterp-arith pca --json`` prints."""

    pca: PCAResult
    projection: ProjectionResult | None
    summary: dict[str, Any]


def study_pca(
    ckpt: Checkpoint,
    n: int = 10_000,
    n_id: int = 2000,
    hook: str = DEFAULT_HOOK,
    position: int | str | None = None,
    label: str = DEFAULT_LABEL,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> StudyPCA:
    """The study's Fig. 4 setting in one call: what ``mechinterp-arith pca`` prints, the report's PCA
    section shows and a sweep's ``pca_*`` columns hold.

    PCA of ``hook`` at ``position`` over ``n`` random pairs with each operand in [0, 10^(n+1)) (n + 1
    as far as the format holds it: :func:`~mechinterp_arith.core.data.default_ood_digits`),
    separability of ``label``; the pairs among them with an operand longer than n digits are then
    projected on the PCA and label centroids of ``n_id`` random ID pairs (:func:`project`; their
    own random stream, ``derive_seed(seed, "study_pca", "id")``). Answer slots past the prompt hold
    the model's greedy answers.
    """
    task = ckpt.task
    pos = resolve_position(task, position)
    (a, b), (ia, ib) = study_sets(task, n, n_id, seed)
    answers = "greedy" if needs_answer_tokens(task, [pos]) else "true"
    res = residual_pca(ckpt, a, b, hook, pos, label, k, answers=answers, seed=seed)
    top = data.default_ood_digits(task) or task.digits
    out = {"inputs": f"{n} random pairs, each operand in [0, 10^{top})", **res.summary()}
    if answers == "greedy":
        out["teacher_forced_answers"] = "greedy"
    ood = ~data.in_distribution(task, a, b)
    proj = None
    if ood.any():
        id_acts = flatten(collect(ckpt, ia, ib, [hook], [pos], answers="true")[hook])
        proj = project(
            task, id_acts, (ia, ib), res.activations[ood], (a[ood], b[ood]), hook, pos, label, k, answers, seed
        )
        s = proj.summary()
        out.update({key: s[key] for key in PROJECTION_KEYS})
    return StudyPCA(res, proj, out)
