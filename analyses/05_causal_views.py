# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Causal views: logit lens, activation patching, OOD-to-ID patching, attention
#
# Beyond the study's figures: where in the network `add3` decides each answer digit, and where the extra
# (4th) operand digits of an OOD input stop mattering.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
CHECKPOINT = "add3"
N = 64 if QUICK else 1000  # pairs per set in the logit lens
PATCH_N = 16 if QUICK else 128  # prompt pairs per patching experiment
# pairs whose ID representatives and OOD class members are shown in the attention views
EXAMPLES = [(349, 705), (567, 489)]
SEED = 0
THREADS = 1

# %%
import pandas as pd
from IPython.display import display

import mechinterp_arith as ma
from mechinterp_arith.analysis.attention import class_attention, token_labels
from mechinterp_arith.analysis.circuits import circuit_digits, digit_sites, ood_sites
from mechinterp_arith.analysis.logit_lens import id_ood_logit_lens
from mechinterp_arith.analysis.site_plot import site_figure
from mechinterp_arith.core.positions import position_labels
from mechinterp_arith.report.notebook import attention_views, notebook_setup

# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

ckpt = ma.load(CHECKPOINT, device="cpu")
task = ckpt.task
labels = position_labels(task)

# %% [markdown]
# ## Logit lens
#
# Mean probability of the target digit read off each residual state (`accumulated_resid` → final LayerNorm →
# unembedding), per answer digit; for 4-digit inputs both the equivalent relation's digit and the true digit.

# %%
lens = id_ood_logit_lens(ckpt, n=N, seed=SEED)
print("last state reproduces the logits: max |diff| =", lens.final_max_abs_diff)
lens.figure().show()
ood_set = next(s for s in lens.frame["set"].unique() if s != "id")
display(lens.table("mean_prob", ood_set, "equivalent").round(3))
display(lens.table("mean_prob", ood_set, "true").round(3))

# %% [markdown]
# ## Activation patching: where each answer digit lives
#
# For answer digit k, prompt pairs whose answers differ only in digit k; each site (residual stream before a
# block, attention output, MLP output; per layer and position) patched from the clean into the corrupted run.
# Effect 1 = the clean logit difference restored, 0 = none.

# %%
for k in circuit_digits(task):
    df = digit_sites(ckpt, k, n=PATCH_N, seed=SEED)
    kinds = list(dict.fromkeys(df["kind"]))
    fig = site_figure([df[df.kind == kind] for kind in kinds], kinds, "effect", labels)
    fig.update_layout(title=f"answer digit {k} (10^{k}): normalised patching effect ({df.attrs['n_pairs']} pairs)")
    fig.show()
    top = df[~df.identical].nlargest(3, "effect")[["kind", "layer", "label", "effect"]]
    print(f"digit {k}: top sites", top.to_dict("records"))

# %% [markdown]
# ## OOD-to-ID patching
#
# Each 4-digit input against its ID representative, both teacher-forced with the representative's answer, so
# the two runs differ only at the extra operand digits. `flip_rate`: share of rows whose greedy answer digits
# change when a site is patched from the other run. `act_diff`: relative size of the activation difference.

# %%
sites = ood_sites(ckpt, n=PATCH_N, seed=SEED)
print({k: round(v, 4) if isinstance(v, float) else v for k, v in sites.attrs.items()})
for direction in ("ood->id", "id->ood"):
    part = sites[sites.direction == direction]
    kinds = list(dict.fromkeys(part["kind"]))
    fig = site_figure([part[part.kind == kind] for kind in kinds], kinds, "flip_rate", labels, 0, 1)
    fig.update_layout(title=f"{direction}: share of answers changed by patching the site")
    fig.show()
part = sites[sites.direction == "ood->id"]
kinds = list(dict.fromkeys(part["kind"]))
fig = site_figure([part[part.kind == kind] for kind in kinds], kinds, "act_diff", labels, colorscale="Viridis")
fig.update_layout(title="relative activation difference, OOD vs representative")
fig.show()

# %% [markdown]
# ## Attention patterns (circuitsvis, offline)
#
# All heads of each ID input beside OOD members of its class, over the sequence the model reads while
# answering (prompt and its own answer digits). circuitsvis' default notebook display imports its JavaScript
# from a CDN; here the bundle shipped inside the circuitsvis package is inlined once, so the views render
# without network access.

# %%
views, distances = [], []
for a0, b0 in EXAMPLES:
    view = class_attention(ckpt, a0, b0, seed=SEED)
    for i, (x, y) in enumerate(view.members):
        caption = f"{'ID' if i == 0 else 'OOD'}: {task.describe(str(x), str(y))} → {int(view.answers[i])}"
        views.append((caption, view.patterns[i], token_labels(task, view.tokens[i])))
    x0, y0 = view.members[0]
    distances.append(view.distance.assign(ID=task.describe(str(x0), str(y0))).round(3))
display(attention_views(views, view.heads, id_prefix="nb05"))
print(
    "largest TV distance between the OOD and the ID attention pattern over the answer-predicting positions, per head:"
)
pd.concat(distances, ignore_index=True)
