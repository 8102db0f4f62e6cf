"""The sweep report: one offline page comparing the runs of a sweep directory.

Sections: the runs (settings that vary, status, figures, errors); exact match by operand length
per setting (lines: the mean over seeds, bars: the seeds' range, dots: each seed); equivalence
coverage against OOD exact match (one dot per run); held-out ID exact match over training (one
line per run). Same page, template and embedded assets as the checkpoint report.

>>> result = build_sweep_report("out/smoke", "out/smoke/report")     # doctest: +SKIP
>>> result.path                                                        # doctest: +SKIP
PosixPath('out/smoke/report/index.html')
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ..core.files import atomic_write_text
from ..sweep.results import DONE, load_sweep, run_history
from ..sweep.settings import SETTING_KEYS
from .assets import ElementIds, figure_html
from .build import INDEX, ReportResult, render_sections, run_section
from .context import escape, table

COLORS = qualitative.Plotly


@dataclass
class SweepContext:
    """The results of one sweep directory, the group label of each run and the page's element ids."""

    sweep_dir: Path
    frame: pd.DataFrame
    ids: ElementIds = field(default_factory=ElementIds)

    @property
    def varying(self) -> list[str]:
        """Settings that differ between runs, seed aside."""
        return varying_settings(self.frame)

    @property
    def done(self) -> pd.DataFrame:
        """The finished runs, each with its group ``label``: the settings that differ between
        finished runs, seed aside (``positional=rotary``), or ``all runs``."""
        frame = self.frame[self.frame["status"] == DONE].copy()
        keys = varying_settings(frame)
        frame["label"] = [", ".join(f"{k}={row[k]}" for k in keys) or "all runs" for _, row in frame.iterrows()]
        return frame

    def color(self, label: object) -> str:
        labels = sorted(set(self.done["label"]))
        return COLORS[labels.index(label) % len(COLORS)]

    def figure(self, fig: go.Figure, height: int = 460) -> str:
        return figure_html(fig, self.ids, height)


def varying_settings(frame: pd.DataFrame) -> list[str]:
    """Setting columns whose value differs between the rows, seed aside."""
    return [k for k in SETTING_KEYS if k in frame and k != "seed" and frame[k].astype(str).nunique() > 1]


def runs_section(ctx: SweepContext) -> dict:
    frame = ctx.frame
    counts = frame["status"].value_counts().to_dict()
    figure_cols = [
        c
        for c in (
            "id_exact",
            *sorted(c for c in frame.columns.astype(str) if c.startswith("exact_len")),
            "equiv_relation",
            "equiv_coverage",
            "pca_centroid_accuracy",
        )
        if c in frame
    ]
    rows = [
        [
            r["run_id"],
            *(r[k] for k in ctx.varying),
            r["seed"],
            r["status"],
            *(_fmt(r[c]) for c in figure_cols),
            "" if pd.isna(r.get("error")) else r["error"],
        ]
        for _, r in frame.iterrows()
    ]
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    html = (
        f"<p>{len(frame)} runs ({escape(summary)}) in <code>{escape(ctx.sweep_dir)}</code>; settings that vary: "
        f"{escape(', '.join(ctx.varying + ['seed']))}.</p>"
        + table(rows, ["run", *ctx.varying, "seed", "status", *figure_cols, "error"], cls="compact")
    )
    return {"title": "Runs", "html": html}


def length_figure(ctx: SweepContext) -> go.Figure | None:
    """Exact match by operand length per group: the mean over seeds (line), their range (bars), each seed (dots)."""
    done = ctx.done
    cols = sorted((c for c in done.columns.astype(str) if c.startswith("exact_len")), key=lambda c: int(c[9:]))
    if done.empty or "id_exact" not in done:
        return None
    fig = go.Figure()
    for label, runs in done.groupby("label", sort=True):
        xs = [int(runs["digits"].iloc[0])] + [int(c[9:]) for c in cols]
        values = runs[["id_exact", *cols]].to_numpy(dtype=float)
        mean, lo, hi = values.mean(0), values.min(0), values.max(0)
        color = ctx.color(label)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=mean,
                mode="lines+markers",
                name=f"{label} ({len(runs)} seeds)",
                legendgroup=label,
                line=dict(color=color),
                error_y=dict(type="data", symmetric=False, array=hi - mean, arrayminus=mean - lo),
            )
        )
        for (_, run), row in zip(runs.iterrows(), values):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=row,
                    mode="markers",
                    marker=dict(color=color, size=5, opacity=0.45),
                    legendgroup=label,
                    showlegend=False,
                    name=f"{run['run_id']} (seed {run['seed']})",
                )
            )
    fig.update_layout(
        title="Exact match by operand length (both operands m digits; first point: held-out ID)",
        xaxis_dtick=1,
        xaxis_title="operand length m (digits)",
        yaxis_title="exact match",
        yaxis_range=[-0.03, 1.03],
    )
    return fig


def length_section(ctx: SweepContext) -> dict:
    fig = length_figure(ctx)
    if fig is None:
        return _note("Exact match by operand length", "No finished run was evaluated ([analyses] evaluate).")
    return {"title": "Exact match by operand length", "html": ctx.figure(fig)}


def equivalence_section(ctx: SweepContext) -> dict:
    done = ctx.done
    if done.empty or "equiv_coverage" not in done or done["equiv_coverage"].isna().all():
        return _note(
            "Equivalence coverage vs OOD exact match",
            "No finished run has an equivalence analysis "
            "([analyses] equivalence, on a format holding operands longer than n digits).",
        )
    fig = go.Figure()
    for label, runs in done.dropna(subset=["equiv_coverage"]).groupby("label", sort=True):
        exact = [_ood_exact(r) for _, r in runs.iterrows()]
        text = [f"{r['run_id']}<br>{r['equiv_relation']}" for _, r in runs.iterrows()]
        fig.add_trace(
            go.Scatter(
                x=exact,
                y=runs["equiv_coverage"],
                mode="markers",
                name=label,
                text=text,
                marker=dict(color=ctx.color(label), size=10),
                hovertemplate="%{text}<br>OOD exact %{x:.3f}<br>coverage %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Share of OOD answers the best ID relation explains, against OOD exact match (both operands n+1 digits)",
        xaxis_title="OOD exact match",
        yaxis_title="coverage of the best relation",
        xaxis_range=[-0.03, 1.03],
        yaxis_range=[-0.03, 1.03],
    )
    return {"title": "Equivalence coverage vs OOD exact match", "html": ctx.figure(fig)}


def training_section(ctx: SweepContext) -> dict:
    fig, shown = go.Figure(), set()
    for _, run in ctx.done.iterrows():
        history = run_history(ctx.sweep_dir, run["run_id"])
        if history.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=history["step"],
                y=history["id_exact"],
                mode="lines",
                legendgroup=run["label"],
                name=run["label"],
                showlegend=run["label"] not in shown,
                line=dict(color=ctx.color(run["label"])),
                hovertext=run["run_id"],
            )
        )
        shown.add(run["label"])
    if not fig.data:
        return _note("Held-out ID exact match over training", "No finished run has a training history.")
    fig.update_layout(
        title="Held-out ID exact match over training (one line per run)",
        xaxis_title="step",
        yaxis_title="ID exact match",
        yaxis_range=[-0.03, 1.03],
    )
    return {"title": "Held-out ID exact match over training", "html": ctx.figure(fig)}


SWEEP_SECTIONS = {
    "runs": runs_section,
    "by_length": length_section,
    "equivalence": equivalence_section,
    "training": training_section,
}


def build_sweep_report(sweep_dir: str | Path, out_dir: str | Path, command: str | None = None) -> ReportResult:
    """Write ``out_dir/index.html`` (atomically) comparing the runs of a sweep directory."""
    start = time.perf_counter()
    ctx = SweepContext(Path(sweep_dir), load_sweep(sweep_dir))
    sections = [run_section(key, ctx, section) for key, section in SWEEP_SECTIONS.items()]
    name = ctx.sweep_dir.resolve().name
    page = render_sections(
        f"mechinterp-arith sweep report: {name}",
        f"{len(ctx.frame)} runs; settings that vary: {', '.join(ctx.varying + ['seed'])}",
        sections,
        command,
        settings=f"sweep directory {ctx.sweep_dir}",
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / INDEX
    atomic_write_text(path, page)
    return ReportResult(path, path.stat().st_size, time.perf_counter() - start, sections)


def _ood_exact(row) -> float:
    key = f"exact_len{int(row['equiv_digits'])}" if not pd.isna(row.get("equiv_digits")) else ""
    value = row.get(key, math.nan)
    return row.get("train_ood_exact", math.nan) if pd.isna(value) else value


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _note(title: str, text: str) -> dict:
    return {"title": title, "html": f'<p class="placeholder">{escape(text)}</p>', "status": "skipped"}
