# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Residual-stream PCA over training (Fig. 4) and the OOD projection
#
# The study's Fig. 4 setting: the final LayerNorm output (`ln_final.hook_out`, with scale and bias) at the
# position that predicts the units digit, over random pairs with each operand in [0, 10^4), coloured by the
# units digit of the answer. Units-digit clusters form during training; 4-digit inputs land on the cluster
# of their ID representative. Run on the shipped `add3` and its snapshots (steps 100..1000). `study_pca` is
# what `mechinterp-arith pca --n N --n-id N_ID` prints and the report's PCA section shows.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
CHECKPOINT = "add3"
N = 400 if QUICK else 10_000  # the Fig.-4 set: operands in [0, 10^(n+1))
N_ID = 200 if QUICK else 2000  # ID pairs the projection is fitted on
DYN_N = 200 if QUICK else 2000  # pairs per snapshot in the dynamics
STEPS = [100, 300, 1000] if QUICK else None  # snapshots (None: all)
SEED = 0
THREADS = 1

# %%
import numpy as np

import mechinterp_arith as ma
from mechinterp_arith.analysis.dynamics import pca_dynamics
from mechinterp_arith.analysis.projection import study_pca, study_sets
from mechinterp_arith.core.data import in_distribution
from mechinterp_arith.report.notebook import notebook_setup

# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

ckpt = ma.load(CHECKPOINT, device="cpu")
task = ckpt.task
(a, b), id_pairs = study_sets(task, N, N_ID, seed=SEED)
is_ood = ~in_distribution(task, a, b)
print(f"{N} pairs, {int(is_ood.sum())} with an operand of more than {task.digits} digits")

# %% [markdown]
# ## The trained model

# %%
fig4 = study_pca(ckpt, N, N_ID, seed=SEED)  # ln_final.hook_out @ the units-predicting position, label = units digit
print({k: v for k, v in fig4.pca.summary().items() if k != "explained_variance_ratio"})
print("explained variance (top 5):", np.round(fig4.pca.explained_variance_ratio[:5], 3))
fig4.pca.figure(dims=2).show()

# %% [markdown]
# ## Clusters forming over training

# %%
ood_pairs = (a[is_ood][:DYN_N], b[is_ood][:DYN_N])
dyn = pca_dynamics(ckpt, a[:DYN_N], b[:DYN_N], steps=STEPS, id_pairs=id_pairs, ood_pairs=ood_pairs)
dyn.scatter_figure().show()
dyn.figure().show()
dyn.frame

# %% [markdown]
# ## OOD projection
#
# PCA and label centroids fitted on ID pairs; each OOD point is assigned to the nearest ID centroid. For the
# units digit the equivalent and the true label coincide, so the thousands digit (position `ans3`, label
# `ans3`) is where the two claims part: 4-digit inputs sit on the cluster of the *equivalent* digit.

# %%
print(fig4.projection.summary())
fig4.projection.figure().show()

# %%
thousands = study_pca(ckpt, N, N_ID, position="ans3", label="ans3", seed=SEED)
s3 = thousands.summary
print(
    f"thousands digit: OOD on the equivalent cluster {s3['ood_on_equivalent_cluster_where_differ']:.3f}, "
    f"on the true cluster {s3['ood_on_true_cluster_where_differ']:.3f} (where the labels differ: {s3['labels_differ']:.3f})"
)
thousands.projection.figure().show()
