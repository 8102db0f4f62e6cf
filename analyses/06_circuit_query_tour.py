# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of the circuit query API
#
# `mechinterp_arith.analysis.circuits` answers circuit questions with batched activation patching and returns pandas
# DataFrames (filter them with `.query`, `.nlargest`, `.pivot`). `explain(ckpt, a, b)` is the one-input
# view: prediction, ID representative and the top patching sites per answer digit.

# %% tags=["parameters"]
import os

# MECHINTERP_ARITH_QUICK=1 (set by tests/acceptance/test_notebooks.py): small sizes, same code
QUICK = os.environ.get("MECHINTERP_ARITH_QUICK", "0") == "1"
CHECKPOINT = "add3"
N = 16 if QUICK else 64  # prompt pairs per query
DIGIT = 1  # answer digit (10^DIGIT place) the single-digit queries look at
OOD_INPUT = (1349, 705)  # explain(): an OOD input, answered as its representative 349 + 705
SEED = 0
THREADS = 1

# %%
import json

import pandas as pd

import mechinterp_arith as ma
from mechinterp_arith.analysis.circuits import (
    attention_to_operands,
    circuit_heads,
    digit_sites,
    explain,
    head_operand_map,
    ood_sites,
)
from mechinterp_arith.report.notebook import notebook_setup

# offline figures (plotly.js embedded once, no MathJax, no CDN), THREADS torch threads, SEED
notebook_setup(THREADS, SEED)

ckpt = ma.load(CHECKPOINT, device="cpu")

# %% [markdown]
# ## `digit_sites(ckpt, k)`: which (kind, layer, position) sites carry answer digit k

# %%
sites = digit_sites(ckpt, DIGIT, n=N, seed=SEED)
print(sites.attrs)
sites.nlargest(5, "effect")[["kind", "layer", "pos", "label", "effect"]]

# %% [markdown]
# ## `attention_to_operands(ckpt, k)`: mean attention from the position predicting digit k to every operand digit

# %%
att = attention_to_operands(ckpt, DIGIT, n=N, seed=SEED)
att.pivot_table(index=["layer", "head"], columns=["operand", "place"], values="attention").round(2)

# %% [markdown]
# ## `head_operand_map(ckpt, k)`: which heads move which operand digits into answer position k

# %%
hmap = head_operand_map(ckpt, DIGIT, n=N, seed=SEED)
hmap.query("attention > 0.3")[["layer", "head", "operand", "place", "attention", "effect", "best_label", "best_effect"]]

# %% [markdown]
# ## `circuit_heads(ckpt)`: the heads that read an operand digit and matter, for every answer digit
#
# (A DataFrame of heads; the edge circuits of notebook 07 come from `discover`.)

# %%
heads = circuit_heads(ckpt, n=N, seed=SEED)
heads[["digit", "layer", "head", "operand", "place", "attention", "effect"]].sort_values(
    ["digit", "effect"], ascending=[True, False]
)

# %% [markdown]
# ## `ood_sites(ckpt)`: patching between 4-digit inputs and their ID representatives

# %%
ood = ood_sites(ckpt, n=N, seed=SEED)
print({k: round(v, 4) if isinstance(v, float) else v for k, v in ood.attrs.items()})
ood.query("direction == 'ood->id'").nlargest(5, "answer_logit_change")

# %% [markdown]
# ## `explain(ckpt, a, b)`: one input

# %%
ex = explain(ckpt, *OOD_INPUT)
print(json.dumps({k: v for k, v in ex.items() if k != "digits"}, indent=1))
pd.DataFrame(
    [
        {
            "k": d["k"],
            "predicted": d["predicted"],
            "true": d["true"],
            "n_corruptions": d["n_corruptions"],
            "top_sites": ", ".join(
                f"{s['kind']} L{s['layer']} {s['label']} ({s['effect']:.2f})" for s in d["top_sites"]
            ),
        }
        for d in ex["digits"]
    ]
)

# %%
rep = ex["id_representative"]
ex_id = explain(ckpt, rep["a"], rep["b"])
print("the representative:", json.dumps({k: ex_id[k] for k in ("a", "b", "prediction", "correct")}))
same = all(
    [s["label"] for s in d1["top_sites"]] == [s["label"] for s in d2["top_sites"]]
    for d1, d2 in zip(ex["digits"], ex_id["digits"])
)
print("same top sites for every digit:", same)
