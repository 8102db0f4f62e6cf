"""The follow-up's table beside ours: exact match and the truncated relation by operand length 1..9.

The follow-up (Xu et al., arXiv 2407.17963) publishes, for each training set, exact match and the
share of answers equal to ``(a mod 10^n) op (b mod 10^n)`` (mod p for the modular tasks) on operands
of 1 to 9 digits. :data:`PUBLISHED` holds those numbers as its notebook printed them
(``Test_Accuracy_Table.ipynb`` in xingchengxu/ArithmeticLLM, commit a471a1c; docs/follow_up.md);
:func:`follow_up_table` puts a sweep's groups (runs differing only in seed, analysed with
``[analyses] by_length = true``) beside the published row of the same training set, and
:func:`follow_up_section` is the sweep report's section built from it.

>>> [row.name for row in PUBLISHED][:3]
['add D_4', 'add D_ab4', 'add D_5']
>>> published_row("mulmod", 3, "either", 51).exact[3]        # 4-digit operands: 2.59% exact
0.0259
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from .context import escape, table

SOURCE = "xingchengxu/ArithmeticLLM, Test_Accuracy_Table.ipynb (commit a471a1c)"
LENGTHS = tuple(range(1, 10))


@dataclass(frozen=True)
class PublishedRow:
    """One row of the follow-up's table: its training set, model size and shares at lengths 1..9.

    ``exact`` and ``truncated`` are fractions (their notebook's DataFrame outputs); ``cells`` names the
    notebook cells that printed them (exact, truncated); ``note`` says where their setting differs
    from the one of ours it is matched to."""

    name: str
    task: str
    digits: int
    operand_lengths: str
    modulus: int | None
    params: str
    exact: tuple[float, ...]
    truncated: tuple[float, ...]
    cells: str
    note: str = ""


def _row(name, task, digits, lengths, modulus, params, exact, truncated, cells, note="") -> PublishedRow:
    return PublishedRow(name, task, digits, lengths, modulus, params, tuple(exact), tuple(truncated), cells, note)


ONES, ZEROS = (1.0,) * 9, (0.0,) * 9
ADD, MUL, MOD_ADD, MOD_MUL = "cells 15 / 40", "cells 21 / 46", "cells 9 / 34", "cells 26 / 51"
PUBLISHED: tuple[PublishedRow, ...] = (
    _row("add D_4", "add", 4, "either", None, "10.73M", ONES[:4] + ZEROS[:5], ONES, ADD),
    _row(
        "add D_ab4",
        "add",
        4,
        "both",
        None,
        "10.73M",
        (1.0, 1.0, 0.7264, 1.0, 0.0001, 0.0, 0.0, 0.0, 0.0),
        (1.0, 0.998586, 0.7231, 1.0, 0.9971, 0.9969, 0.9955, 0.9966, 0.9945),
        ADD,
        "scored on their 'either' sets although trained on both operands of 4 digits",
    ),
    _row("add D_5", "add", 5, "either", None, "10.73M", ONES[:5] + ZEROS[:4], ONES, ADD),
    _row("add D_6", "add", 6, "either", None, "10.73M", ONES[:6] + ZEROS[:3], ONES, ADD),
    _row("add D_45", "add", 5, "either:4-5", None, "10.73M", ONES[:5] + ZEROS[:4], ONES, ADD),
    _row("add D_56", "add", 6, "either:5-6", None, "10.73M", ONES[:6] + ZEROS[:3], ONES, ADD),
    _row("add D_67", "add", 7, "either:6-7", None, "10.73M", ONES[:7] + ZEROS[:2], ONES, ADD),
    _row(
        "mul D_12",
        "mul",
        2,
        "either:1-2",
        None,
        "0.82M",
        (1.0, 1.0, 0.0013, 0.0004, 0.0, 0.0, 0.0, 0.0, 0.0),
        (1.0, 0.999495, 0.9295, 0.9006, 0.8604, 0.8257, 0.8063, 0.7816, 0.7772),
        MUL,
        "the cell making their 1-2 digit set is not in the repository",
    ),
    _row(
        "mul D_2",
        "mul",
        2,
        "either",
        None,
        "0.82M",
        (0.8, 0.993939, 0.0013, 0.0004, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.85, 0.993939, 0.9812, 0.9669, 0.8897, 0.8887, 0.8842, 0.8983, 0.8870),
        MUL,
        "their checkpoint is 'half_ckpt' (saved mid-training)",
    ),
    _row(
        "mul D_3",
        "mul",
        3,
        "either",
        None,
        "10.73M",
        (1.0, 0.963636, 0.9896, 0.0004, 0.0, 0.0, 0.0, 0.0, 0.0),
        (1.0, 0.962121, 0.9880, 0.9887, 0.9895, 0.9792, 0.9794, 0.9724, 0.9709),
        MUL,
    ),
    _row(
        "mul D_34",
        "mul",
        4,
        "either:3-4",
        None,
        "10.73M",
        (0.8, 0.098990, 0.9724, 0.0132, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.85, 0.102929, 0.9687, 0.0138, 0.0089, 0.0082, 0.0079, 0.0070, 0.0022),
        MUL,
        "theirs: 60% 3-digit and 40% 4-digit pairs; ours equal shares",
    ),
    _row(
        "mul D_234",
        "mul",
        4,
        "either:2-4",
        None,
        "10.73M",
        (1.0, 1.0, 0.9885, 0.8054, 0.0, 0.0, 0.0, 0.0, 0.0),
        (1.0, 0.999798, 0.9892, 0.8105, 0.7563, 0.7623, 0.7384, 0.6752, 0.6694),
        MUL,
        "the cell making their 2-4 digit set is not in the repository",
    ),
    _row(
        "addmod p=150",
        "addmod",
        4,
        "either:1-4",
        150,
        "10.73M",
        (1.0, 1.0, 1.0, 1.0, 0.332, 0.336, 0.323, 0.330, 0.337),
        (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.998, 0.997),
        MOD_ADD,
        "theirs: all 1- and 2-digit pairs, 100,000 3-digit and 90,000 4-digit pairs; only the p = 150 row "
        "is printed in the notebook, to one decimal (its LaTeX output)",
    ),
    _row("mulmod p=50", "mulmod", 3, "either", 50, "10.73M", ONES, ONES, MOD_MUL),
    _row(
        "mulmod p=51",
        "mulmod",
        3,
        "either",
        51,
        "10.73M",
        (1.0, 1.0, 0.9973, 0.0259, 0.0245, 0.0280, 0.0237, 0.0251, 0.0319),
        (1.0, 1.0, 0.9971, 0.9977, 0.9840, 0.8442, 0.8188, 0.6864, 0.5719),
        MOD_MUL,
    ),
    _row("mulmod p=100", "mulmod", 3, "either", 100, "10.73M", ONES, ONES, MOD_MUL),
    _row(
        "mulmod p=150",
        "mulmod",
        3,
        "either",
        150,
        "10.73M",
        (0.6, 0.545679, 0.5242, 0.5259, 0.5310, 0.5273, 0.5377, 0.5299, 0.5331),
        (0.66, 0.524691, 0.5188, 0.5199, 0.5352, 0.5276, 0.5251, 0.5326, 0.5247),
        MOD_MUL,
        "their checkpoint is 'ckpt' (not 'final_ckpt'): about half right in distribution",
    ),
    _row(
        "mulmod p=200",
        "mulmod",
        3,
        "either",
        200,
        "10.73M",
        (0.1, 0.627160, 0.6305, 0.6288, 0.6215, 0.6156, 0.6179, 0.6253, 0.6293),
        (0.24, 0.623457, 0.6310, 0.6181, 0.6280, 0.6163, 0.6285, 0.6204, 0.6277),
        MOD_MUL,
        "their checkpoint is 'ckpt' (not 'final_ckpt'): 63% right in distribution",
    ),
    _row(
        "mulmod p=201",
        "mulmod",
        3,
        "either",
        201,
        "10.73M",
        (0.8, 0.782716, 0.9217, 0.0067, 0.0058, 0.0053, 0.0064, 0.0063, 0.0060),
        (0.71, 0.794938, 0.9211, 0.9091, 0.9074, 0.9048, 0.8866, 0.8787, 0.8501),
        MOD_MUL,
        "their checkpoint is 'half_ckpt' (saved mid-training)",
    ),
)


def published_row(task: str, digits: int, operand_lengths: str, modulus: int | None = None) -> PublishedRow | None:
    """The published row trained on this set (None when the notebook prints none for it)."""
    for row in PUBLISHED:
        if (row.task, row.digits, row.operand_lengths, row.modulus) == (task, digits, operand_lengths, modulus):
            return row
    return None


def _modulus(value) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def follow_up_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group of finished runs with by-length figures (``len<m>_*`` columns of results.csv):
    its training set, seeds, steps, mean seconds, the mean over seeds of exact and truncated at each
    length m (``exact_<m>``, ``truncated_<m>``, with ``_min``/``_max`` over seeds), the best relation
    most seeds share (``best_<m>``, ``best_<m>_seeds``), the share of pairs whose truncated answer is
    the true one (``truncated_true_<m>``), and the published row of the same set (``theirs``, its
    ``their_exact_<m>`` and ``their_truncated_<m>``). Empty when no run has by-length figures."""
    if "len1_exact" not in frame or "status" not in frame:
        return pd.DataFrame()
    done = frame[(frame["status"] == "done") & frame["len1_exact"].notna()]
    rows = []
    for group, runs in done.groupby("group", sort=False):
        first = runs.iloc[0]
        modulus = _modulus(first.get("modulus"))
        row = {
            "group": group,
            "task": first["task"],
            "modulus": modulus,
            "digits": int(first["digits"]),
            "operand_lengths": first["operand_lengths"],
            "model": f"{int(first['n_layers'])}L {int(first['n_heads'])}H d{int(first['d_model'])}",
            "width": int(first["width"]),
            "steps": int(first["steps"]),
            "steps_min": float(runs["train_steps"].min()) if "train_steps" in runs else math.nan,
            "steps_max": float(runs["train_steps"].max()) if "train_steps" in runs else math.nan,
            "seeds": ", ".join(str(int(s)) for s in runs["seed"]),
            "n_seeds": len(runs),
            "seconds": float(runs["seconds"].mean()) if "seconds" in runs else math.nan,
            "operands": first.get("len_operands"),
        }
        if "id_exact" in runs:
            row["id_exact"] = float(runs["id_exact"].mean())
        for m in LENGTHS:
            if f"len{m}_exact" not in runs:
                continue
            for key in ("exact", "truncated"):
                values = runs[f"len{m}_{key}"].astype(float)
                row.update(
                    {f"{key}_{m}": values.mean(), f"{key}_{m}_min": values.min(), f"{key}_{m}_max": values.max()}
                )
            row[f"truncated_true_{m}"] = float(runs[f"len{m}_truncated_true"].mean())
            best, count = Counter(runs[f"len{m}_best"]).most_common(1)[0]
            row.update({f"best_{m}": best, f"best_{m}_seeds": count})
            row[f"best_{m}_coverage"] = float(runs.loc[runs[f"len{m}_best"] == best, f"len{m}_best_coverage"].mean())
        theirs = published_row(row["task"], row["digits"], row["operand_lengths"], modulus)
        row["theirs"] = theirs.name if theirs else None
        if theirs:
            row.update({"their_params": theirs.params, "their_note": theirs.note, "their_cells": theirs.cells})
            for m in LENGTHS:
                row[f"their_exact_{m}"] = theirs.exact[m - 1]
                row[f"their_truncated_{m}"] = theirs.truncated[m - 1]
        rows.append(row)
    return pd.DataFrame(rows)


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _ours(row, key: str, m: int) -> str:
    if f"{key}_{m}" not in row or pd.isna(row[f"{key}_{m}"]):
        return ""
    lo, hi = row[f"{key}_{m}_min"], row[f"{key}_{m}_max"]
    spread = f" ({_pct(lo)}-{_pct(hi)})" if row["n_seeds"] > 1 and hi - lo >= 0.0005 else ""
    return _pct(row[f"{key}_{m}"]) + spread


def has_published(row) -> bool:
    """Whether a table row has the follow-up's published row beside it (``theirs`` is its name)."""
    return isinstance(row.get("theirs"), str)


def steps_text(row) -> str:
    """``1,250-2,500 of 4,000 steps``: the steps the seeds trained (a target accuracy stops them early)."""
    lo, hi = row.get("steps_min"), row.get("steps_max")
    if lo is None or pd.isna(lo):
        return f"{row['steps']:,} steps"
    done = f"{int(lo):,}" if lo == hi else f"{int(lo):,}-{int(hi):,}"
    return f"{done} of {row['steps']:,} steps"


def describe_set(row) -> str:
    """``addmod p=101, 4 digits (either)``: the training set of a table row."""
    p = f" p={int(row['modulus'])}" if row["modulus"] is not None and not pd.isna(row["modulus"]) else ""
    return f"{row['task']}{p}, {row['digits']} digits ({row['operand_lengths']})"


def comparison_rows(table_frame: pd.DataFrame) -> list[list[str]]:
    """The section's table body: per group, ours and theirs for exact and truncated, then our best relation."""
    rows = []
    for _, row in table_frame.iterrows():
        what = f"{describe_set(row)}; {row['model']}, {steps_text(row)}, seeds {row['seeds']}"
        rows.append([what, "ours: exact", *(_ours(row, "exact", m) for m in LENGTHS)])
        if has_published(row):
            rows.append(
                [
                    "",
                    f"theirs ({row['theirs']}, {row['their_params']}): exact",
                    *(_pct(row[f"their_exact_{m}"]) for m in LENGTHS),
                ]
            )
        rows.append(["", "ours: truncated", *(_ours(row, "truncated", m) for m in LENGTHS)])
        if has_published(row):
            rows.append(["", "theirs: truncated", *(_pct(row[f"their_truncated_{m}"]) for m in LENGTHS)])
        rows.append(["", "truncated = true on", *(_pct(row.get(f"truncated_true_{m}")) for m in LENGTHS)])
        rows.append(["", "best relation (seeds)", *(best_text(row, m) for m in LENGTHS)])
    return rows


def best_text(row, m: int) -> str:
    """The best relation at length m, the seeds naming it and its mean coverage (percent)."""
    if f"best_{m}" not in row or pd.isna(row[f"best_{m}"]):
        return ""
    return f"{row[f'best_{m}']} ({int(row[f'best_{m}_seeds'])}/{row['n_seeds']}, {_pct(row[f'best_{m}_coverage'])})"


def follow_up_figure(table_frame: pd.DataFrame, key: str, colors) -> go.Figure:
    """``key`` (exact or truncated) by operand length: ours (mean over seeds, bars: their range) and the
    published row of the same set (dashed)."""
    fig = go.Figure()
    for i, (_, row) in enumerate(table_frame.iterrows()):
        color = colors[i % len(colors)]
        mean = [row.get(f"{key}_{m}", math.nan) for m in LENGTHS]
        lo = [row.get(f"{key}_{m}_min", math.nan) for m in LENGTHS]
        hi = [row.get(f"{key}_{m}_max", math.nan) for m in LENGTHS]
        label = describe_set(row)
        fig.add_trace(
            go.Scatter(
                x=list(LENGTHS),
                y=mean,
                mode="lines+markers",
                name=f"{label}: ours",
                legendgroup=label,
                line=dict(color=color),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[h - v for h, v in zip(hi, mean)],
                    arrayminus=[v - lo_ for v, lo_ in zip(mean, lo)],
                ),
            )
        )
        if has_published(row):
            theirs = [row[f"their_{key}_{m}"] for m in LENGTHS]
            fig.add_trace(
                go.Scatter(
                    x=list(LENGTHS),
                    y=theirs,
                    mode="lines",
                    name=f"{label}: theirs ({row['their_params']})",
                    legendgroup=label,
                    line=dict(color=color, dash="dash"),
                )
            )
    what = "exact match" if key == "exact" else "share following (a mod 10^n) op (b mod 10^n)"
    fig.update_layout(
        title=f"{what.capitalize()} by operand length: ours (solid, mean over seeds) and the follow-up's (dashed)",
        xaxis_dtick=1,
        xaxis_title="operand length m (digits)",
        yaxis_title=what,
        yaxis_range=[-0.03, 1.03],
    )
    return fig


def follow_up_section(ctx) -> dict:
    """The sweep report's section: our by-length rows beside the follow-up's published ones."""
    from plotly.colors import qualitative

    title = "By operand length, beside the follow-up's table"
    frame = follow_up_table(ctx.frame)
    if frame.empty:
        text = "No finished run has by-length figures ([analyses] by_length = true)."
        return {"title": title, "html": f'<p class="placeholder">{escape(text)}</p>', "status": "skipped"}
    header = ["training set; model, steps, seeds", "row", *(f"m={m}" for m in LENGTHS)]
    widths = " or ".join(str(w) for w in sorted(set(frame["width"])))
    intro = (
        "<p>Percent of answers, operands of m digits (the follow-up's sets: the longer operand m digits for "
        "addition and multiplication, both operands for the modular tasks). <em>Ours</em>: the mean over seeds "
        "(their range in parentheses); <em>theirs</em>: the follow-up's notebook "
        f"({escape(SOURCE)}). <em>Truncated</em>: the answer equals (a mod 10^n) op (b mod 10^n), reduced mod p "
        "for the modular tasks, n the longest trained length. <em>Truncated = true on</em>: the share of the set "
        "where that relation gives the true answer (no model involved), the exact match of a model that "
        "follows it perfectly. <em>Best relation</em>: the equivalence search's top relation, the seeds naming "
        "it and its mean coverage. Differences: our models have the size in the first column (layers, heads, "
        f"d_model) and were trained for at most the steps shown, operands zero-padded to {escape(widths)} digits "
        "(theirs: 20), no dropout; theirs are 10.73M (0.82M for the two-digit multiplication rows) trained for "
        "an unrecorded number of steps, one seed each.</p>"
    )
    notes = [
        f"<li>{escape(row['theirs'])}: {escape(row['their_note'])}</li>"
        for _, row in frame.iterrows()
        if has_published(row) and isinstance(row.get("their_note"), str) and row["their_note"]
    ]
    colors = qualitative.Plotly
    html = (
        intro
        + table(comparison_rows(frame), header, cls="compact")
        + (f"<ul>{''.join(notes)}</ul>" if notes else "")
        + ctx.figure(follow_up_figure(frame, "exact", colors))
        + ctx.figure(follow_up_figure(frame, "truncated", colors))
    )
    return {"title": title, "html": html}
