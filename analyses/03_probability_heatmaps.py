# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Output-probability heatmaps of an ID input and its OOD class
#
# For an ID pair `(a, b)` and members of its OOD class `(a + i·10^3, b + j·10^3)`, the model's probability of
# each digit at each answer position (along each input's own greedy path), and the total-variation (TV)
# distance of each member's distributions from the representative's: the study's probability-heatmap
# figure. TV ≈ 0 everywhere means the model treats the OOD input as its representative.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
CHECKPOINTS = ("add3", "mul3")  # each shown with its task's example pair (349, 705 for 3 digits)
K = 3  # OOD members per class
N_CLASSES = 5 if QUICK else 100  # random ID classes in the TV summary
SEED = 0
THREADS = 1

# %%
import pandas as pd
from IPython.display import display

import mechinterp_arith as ma
from mechinterp_arith.analysis.equivalence_plots import class_distributions, class_probability_figure
from mechinterp_arith.core.data import example_pair, random_pairs
from mechinterp_arith.report.notebook import notebook_setup

# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

# %%
ckpts = {name: ma.load(name, device="cpu") for name in CHECKPOINTS}
for name, ckpt in ckpts.items():
    a, b = example_pair(ckpt.task)
    class_probability_figure(ckpt, a, b, k=K, seed=SEED).show()
    d = class_distributions(ckpt, a, b, k=K, seed=SEED)
    print(
        f"{name}: ID {ckpt.task.describe(str(a), str(b))} -> {int(d.outputs[0])}; "
        "TV of each OOD member per answer position (units first)"
    )
    print(f"{name}: mean TV over the members {d.tv.tv_mean.mean():.4f}")
    display(d.tv)

# %% [markdown]
# ## TV distance over many classes
#
# Mean and maximum TV distance from the representative per answer position, over random ID pairs with
# `K` OOD members each.

# %%
rows = []
for name, ckpt in ckpts.items():
    a_id, b_id = random_pairs(ckpt.task, N_CLASSES, seed=SEED)
    for a, b in zip(a_id.tolist(), b_id.tolist()):
        tv = class_distributions(ckpt, a, b, k=K, seed=SEED).tv
        rows += [{"checkpoint": name, **{c: r[c] for c in tv.columns if c.startswith("tv_")}} for _, r in tv.iterrows()]
tv_all = pd.DataFrame(rows)
tv_summary = tv_all.groupby("checkpoint").agg(["mean", "max"]).T.unstack()
tv_summary
