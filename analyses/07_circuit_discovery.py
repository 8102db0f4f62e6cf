# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Circuit discovery: attribution patching, edge circuits, sub-task tags, interchange interventions
#
# `discover(ckpt, digit=k)` ranks every edge of TransformerLens's attribution-patching graph (writers: token
# embeddings, head outputs, MLP outputs; readers: each head's q/k/v input, each MLP input, the logits; edges never
# cross positions) by EAP-IG, keeps the smallest top-ranked edge set whose **exact** ablation (every other edge
# set to the corrupted run, TL's `faithfulness`) keeps the answer digit, and verifies it on held-out pairs. Then:
# which sub-task (Quirke & Barez: BaseAdd, MakeCarry1, UseCarry1, UseSum9) each node is necessary for, how well
# EAP and EAP-IG agree with exact activation patching, and two interchange interventions (TL's `interchange`)
# that test the study's claim causally. docs/circuits.md has the method and the measured numbers.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
CHECKPOINT = "add3"
DIGITS = [1] if QUICK else [0, 1, 2, 3]  # answer digits to discover
N = 24 if QUICK else 48  # search pairs per digit
HELDOUT = 48 if QUICK else 256  # held-out pairs that verify each circuit
IG_STEPS = 5  # EAP-IG path steps (1 = plain EAP)
AGREE_N = 16 if QUICK else 64  # pairs per digit for EAP / EAP-IG vs exact patching
IIA_N = 48 if QUICK else 256  # (base, source) pairs of the extra-digit interchange
DAS_N, DAS_EPOCHS = (192, 3) if QUICK else (1024, 20)
SEED = 0
THREADS = 1

# %%
import pandas as pd
import plotly.express as px
from IPython.display import display

import mechinterp_arith as ma
from mechinterp_arith.analysis.attribution import attribution_agreement, attribution_sites
from mechinterp_arith.analysis.circuit_plot import circuit_figure
from mechinterp_arith.analysis.discovery import discover
from mechinterp_arith.analysis.interchange import extra_digit_interchange, units_digit_das
from mechinterp_arith.analysis.subtasks import subtask_tags
from mechinterp_arith.core.positions import position_labels
from mechinterp_arith.report.notebook import notebook_setup

# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

ckpt = ma.load(CHECKPOINT, device="cpu")
labels = position_labels(ckpt.task)

# %% [markdown]
# ## Discover and verify one circuit per answer digit

# %%
circuits = {k: discover(ckpt, k, n=N, n_heldout=HELDOUT, ig_steps=IG_STEPS, seed=SEED) for k in DIGITS}
pd.DataFrame(
    [
        {
            "digit": k,
            "edges": c.n_edges,
            "share of graph": c.n_edges / c.n_edges_total,
            "faithfulness": c.faithfulness,
            "ci95": c.faithfulness_ci95,
            "digit kept": c.agreement,
            "held-out pairs": c.pairs,
            "seconds": c.seconds,
        }
        for k, c in circuits.items()
    ]
)

# %% [markdown]
# The edges as TL `Node` pairs (feed them to `transformer_lens.tools.analysis.attribution_patching.faithfulness`
# on a bridge with per-head results), strongest first, and the JSON that `mechinterp-arith discover --json` prints:

# %%
k = DIGITS[0]
for writer, reader, score in circuits[k].edges()[:8]:
    print(f"{score:+8.3f}  {writer}  ->  {reader}")
out = circuits[k].to_json()
print({key: out[key] for key in ("digit", "n_edges_total", "faithfulness", "faithfulness_ci95", "pairs")})

# %% [markdown]
# ## The circuit graph, nodes coloured by sub-task
#
# Each node's necessity for each sub-task family of its digit: the share of the family's clean-to-corrupted gap
# lost when the node's output is set to the corrupted run's (tags: necessity >= 0.2).

# %%
for c in circuits.values():
    tags = subtask_tags(ckpt, c, n=N, seed=SEED)
    circuit_figure(c, tags, labels).show()
    display(tags.drop(columns=["kind"]).round(3))

# %% [markdown]
# ## EAP and EAP-IG against exact activation patching
#
# Estimated vs exact normalised patching effect of every site (resid_pre, attn_out, one head's z, mlp_out) where the
# runs differ, digits pooled; correlations over the sites where any of the three reaches 0.01.

# %%
sites = attribution_sites(ckpt, digits=DIGITS, n=AGREE_N, seed=SEED, ig_steps=IG_STEPS)
agreement = attribution_agreement(sites)
display(agreement.drop(columns="worst").round(3))
long = sites.melt(
    id_vars=["digit", "family", "layer", "pos", "head", "exact"],
    value_vars=["EAP", "EAP-IG"],
    var_name="method",
    value_name="estimate",
)
px.scatter(
    long,
    x="exact",
    y="estimate",
    color="method",
    facet_col="family",
    hover_data=["digit", "layer", "pos", "head"],
    title="estimated vs exact patching effect (1 = clean restored)",
).show()

# %% [markdown]
# ## Interchange interventions for the study's claim
#
# **(a)** At the positions of a3 and b3 of 4-digit inputs, set the base's residual stream to a source input's
# (every layer in turn): does the answer stay what the model answers for the base (the digits are ignored, as under
# the study's truncation `(a mod 1000) + (b mod 1000)`), or follow the swapped digits (true addition)?

# %%
iia = extra_digit_interchange(ckpt, n=IIA_N, seed=SEED)
print(
    f"positions {iia.attrs['positions']}; without intervention the model answers the truncated sum on "
    f"{iia.attrs['baseline_truncation']:.3f} of the bases"
)
iia

# %% [markdown]
# **(b)** A DAS subspace (TL `fit_das`) for the units digit of the answer at the position predicting it, in
# the state the study's Fig.-4 PCA looks at; its IIA beside a random subspace and an arbitrary relabelling of the
# digit, and its alignment with the PCA clusters (principal-angle cosines, between-digit variance inside it).

# %%
das = units_digit_das(ckpt, rank=8, n=DAS_N, n_test=DAS_N // 2, epochs=DAS_EPOCHS, seed=SEED)
pd.Series({k: v for k, v in vars(das).items() if k not in ("basis", "losses")})
