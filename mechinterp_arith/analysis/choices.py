"""The analyses' defaults and choices that the command line shows in ``--help``: plain Python, no torch.

The modules that use them re-export them (``activations.DEFAULT_HOOK``, ``pca.DEFAULT_K``,
``equivalence.FIT_THRESHOLD``, ``matching.MATCH_ANSWERS``), so the parser is built without
importing an analysis.
"""

from __future__ import annotations

DEFAULT_HOOK = "ln_final.hook_out"  # analysis/activations.py: the study's Fig. 4 state
# what fills the answer slots of the input: the true answer, the model's greedy answer, the answer of
# the ID representative (a mod 10^n, b mod 10^n)
ANSWER_SOURCES = ("true", "greedy", "representative")
DEFAULT_K = 3  # analysis/pca.py: components for separability
FIT_THRESHOLD = (
    0.5  # analysis/equivalence.py: a relation must cover a majority of outputs (Wilson lower bound above this)
)
MATCH_ANSWERS = ("representative", "greedy")  # analysis/matching.py: the answers both runs read
