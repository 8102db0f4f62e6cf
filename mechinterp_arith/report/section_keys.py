"""The keys of the report's sections, in page order: plain Python, so the command line lists them
(``report --sections``) without importing the sections. ``report/sections/__init__.py`` maps each
key to its function and refuses to import when the two lists differ.
"""

from __future__ import annotations

SECTION_KEYS = (
    "model",
    "training",
    "accuracy",
    "positions",
    "equivalence",
    "pca",
    "logit_lens",
    "matching",
    "patching",
    "attention",
    "circuits",
    "discovery",
)
