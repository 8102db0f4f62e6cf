# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Equivalence maps and the relation table
#
# The study's central finding: a model trained on n-digit operands answers longer ones with the true
# answer of their *ID representative*, e.g. `(a mod 10^3) + (b mod 10^3)` for add3. Here, for the shipped
# `add3` and `mul3`:
#
# * grid maps over (a, b) from 0 to 2·10^3 (half ID, half OOD) of the true result, the equivalent
#   relation's result and the model's output (the study's map figure);
# * the relation table: every candidate relation scored against the model's outputs on 4-digit operands
#   (both operands, and one operand), with its coverage, 95% Wilson interval, and how often the output
#   equals the model's own output on the ID representative.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
CHECKPOINTS = ("add3", "mul3")
N = 300 if QUICK else 10_000  # OOD pairs per set in the relation table
POINTS = 24 if QUICK else 100  # grid points per axis of the maps
SEED = 0
THREADS = 1

# %%
import pandas as pd
from IPython.display import display

import mechinterp_arith as ma
from mechinterp_arith.analysis.equivalence import analyse_checkpoint
from mechinterp_arith.analysis.equivalence_plots import relation_maps
from mechinterp_arith.core.data import default_ood_digits
from mechinterp_arith.report.notebook import notebook_setup

# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

ckpts = {name: ma.load(name, device="cpu") for name in CHECKPOINTS}

# %% [markdown]
# ## Grid maps: true vs equivalent vs model (dashed: the ID boundary 10^3)

# %%
for ckpt in ckpts.values():
    relation_maps(ckpt, points=POINTS).show()

# %% [markdown]
# ## Which relation explains the OOD answers?

# %%
results = {name: analyse_checkpoint(ckpt, n=N, seed=SEED) for name, ckpt in ckpts.items()}
rows = []
for name, sets in results.items():
    for by_m in sets.values():
        for r in by_m.values():
            top = r.search.top
            lo, hi = top.ci95
            rows.append(
                {
                    "checkpoint": name,
                    "set": r.label,
                    "n": r.n,
                    "exact (true answer)": r.exact,
                    "best relation": top.name,
                    "coverage": top.coverage,
                    "ci95": f"[{lo:.4f}, {hi:.4f}]",
                    "fits": r.search.fits,
                    "output = model(representative)": r.consistency,
                }
            )
            print(f"{name}, {r.label}: {r.search.verdict}")
summary = pd.DataFrame(rows)
summary

# %% [markdown]
# Every candidate on the both-operands-4-digit set (coverage = share of outputs exactly equal to it):

# %%
for name, sets in results.items():
    r = sets["ood"][str(default_ood_digits(ckpts[name].task))]
    table = pd.DataFrame([rel.to_dict() for rel in r.search.relations])
    print(name)
    display(table[["name", "kind", "coverage", "ci95", "digit_agreement"]].head(8))

# %% [markdown]
# Counter-examples of the top relation (inputs it misses), with the model's output on the representative:

# %%
for name, sets in results.items():
    r = sets["ood"][str(default_ood_digits(ckpts[name].task))]
    print(f"{name}: {r.search.n_counterexamples} of {r.n} missed")
    display(r.counterexamples.head(5))
