# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training curves
#
# The study trains a gpt-nano (3 layers, 3 heads, d_model 48) on n-digit addition: it reaches ~100% exact
# match in distribution and ~0% on longer operands. This notebook trains a small model **in place**
# (2-digit addition by default, a few hundred steps on a CPU) and plots its curves, then shows the shipped
# `add3` checkpoint's logged history and its training snapshots re-scored, with the share of OOD answers
# that equal the study's equivalent relation `(a mod 10^n) + (b mod 10^n)`.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
OP = "add"  # task trained in place: add, sub, mul, addmod, mulmod
DIGITS = 2  # operand digits of that task
STEPS = 40 if QUICK else 600  # optimisation steps
EVAL_EVERY = 10 if QUICK else 50  # steps between evaluations
EVAL_N = 200 if QUICK else 2000  # held-out ID (and OOD) pairs per evaluation
SNAPSHOT_N = 50 if QUICK else 1000  # pairs per set when re-scoring add3's snapshots
SEED = 0
THREADS = 1  # torch CPU threads (the model is tiny)

# %%
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import mechinterp_arith as ma
from mechinterp_arith.core.evaluate import snapshot_scores
from mechinterp_arith.report.notebook import notebook_setup

# Offline figures: plotly.js embedded with the first figure, no MathJax, no CDN (plotly's own "notebook"
# renderer still links MathJax from a CDN, "notebook_connected" loads plotly.js from one).
# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

# %% [markdown]
# ## A model trained here

# %%
task = ma.Task(OP, digits=DIGITS)
print(task.describe(), "| paper format, e.g.", task.to_text(*ma.data.example_pair(task)))
train_cfg = ma.TrainConfig(
    steps=STEPS, eval_every=EVAL_EVERY, eval_n=EVAL_N, warmup=max(1, min(200, STEPS // 5)), seed=SEED, device="cpu"
)
model, history, _ = ma.train(task, train_config=train_cfg, progress=False)
history.tail()


# %%
def curves(history: pd.DataFrame, title: str) -> go.Figure:
    """Loss (log scale, when logged) and ID / OOD exact match (and the OOD rule's share) against the step."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss on answer tokens", "exact match"))
    if "loss" in history:
        fig.add_trace(go.Scatter(x=history["step"], y=history["loss"], mode="lines+markers", name="loss"), row=1, col=1)
        fig.update_yaxes(type="log", row=1, col=1)
    for col in [c for c in history.columns if c.endswith(("exact", "equivalent"))]:
        fig.add_trace(go.Scatter(x=history["step"], y=history[col], mode="lines+markers", name=col), row=1, col=2)
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(title=title, height=380)
    return fig


curves(history, f"{task.name} trained in place ({STEPS} steps)").show()
last = history.iloc[-1]
print(
    f"after {int(last.step)} steps: loss {last.loss:.4f}, ID exact {last.id_exact:.3f}, "
    f"OOD exact {last.get('ood_exact', float('nan')):.3f}"
)

# %% [markdown]
# ## The shipped add3: logged history and snapshots re-scored
#
# `history` is what training logged (every 250 steps); the snapshots (every 100 steps) are re-scored here
# (`snapshot_scores`, as the report's training section does) on held-out ID pairs and 4-digit OOD pairs.
# OOD exact match stays near 0 while the equivalent-relation rate climbs with ID accuracy: the model learns
# `(a mod 1000) + (b mod 1000)` as it learns addition.

# %%
add3 = ma.load("add3", device="cpu")
logged = pd.DataFrame(add3.history)
curves(logged, "add3: logged training history").show()
logged

# %%
snapshots = snapshot_scores(add3, n=SNAPSHOT_N, seed=SEED)
last = snapshots.iloc[-1]
print(
    f"final snapshot (step {int(last.step)}): ID exact {last.id_exact:.3f}, OOD exact {last.ood_exact:.3f}, "
    f"OOD answer = {add3.task.equivalent_description()} {last.ood_equivalent:.3f}"
)
curves(snapshots, "add3 snapshots re-scored (ID, 4-digit OOD, OOD = (a mod 1000) + (b mod 1000))").show()
snapshots
