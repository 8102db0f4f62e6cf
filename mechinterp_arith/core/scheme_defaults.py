"""What each position scheme trains with unless told otherwise: plain Python, no torch.

The one home of the per-scheme defaults (format, architecture, training recipe). The command line
builds ``train --help`` from it before torch is imported; ``ModelConfig.for_task``,
``TrainConfig.for_scheme`` and ``train --positional`` resolve it when training starts, and the
checkpoint records the resolved values. ``position_schemes.scheme_defaults`` re-exports it.

>>> scheme_defaults("learned")
{'format': 'paper', 'model': {}, 'training': {'operand_lengths': 'uniform', 'random_positions': False}}
>>> d = scheme_defaults("coupling")
>>> d["format"], d["model"]["n_layers"], d["training"]["operand_lengths"]
('reversed', 1, 'mixed')
"""

from __future__ import annotations

from typing import Any

from .choices import SCHEMES

GPT_NANO: dict[str, int] = {"n_layers": 3, "n_heads": 3, "d_model": 48, "d_mlp": 192}  # ModelConfig's defaults (minGPT)

# "model": ModelConfig fields (architecture), "training": TrainConfig fields (data and optimisation),
# "format": the task format of the command line. A field a scheme does not name keeps the dataclass
# default (ModelConfig: minGPT gpt-nano; TrainConfig: docs/training.md's recipe), so ``learned``,
# ``rotary``, ``nope`` and ``randomized`` train the study's setting. abacus and coupling follow
# their papers: numbers written with ``+`` and ``=`` and the answer reversed (the separators tell a,
# b and the answer apart, which coupled IDs do not), operand lengths mixed, random offsets; their
# model and budget were chosen by measurement (docs/length_generalisation.md, "Five times the trained
# length"; analyses/results/scheme_defaults.json).
STUDY_DATA: dict[str, Any] = {"operand_lengths": "uniform", "random_positions": False}
PAPERS_DATA: dict[str, Any] = {"operand_lengths": "mixed", "random_positions": True}
SCHEME_DEFAULTS: dict[str, dict[str, Any]] = {
    "learned": {"format": "paper", "model": {}, "training": STUDY_DATA},
    "rotary": {"format": "paper", "model": {}, "training": STUDY_DATA},
    "nope": {"format": "paper", "model": {}, "training": STUDY_DATA},
    "randomized": {"format": "paper", "model": {}, "training": {**STUDY_DATA, "random_positions": True}},
    "abacus": {
        "format": "reversed",
        "model": {"n_layers": 1, "n_heads": 4, "d_model": 128, "d_mlp": 512},
        "training": {**PAPERS_DATA, "steps": 2000, "batch_size": 256, "warmup": 200, "eval_every": 250},
    },
    "coupling": {
        "format": "reversed",
        "model": {"n_layers": 1, "n_heads": 4, "d_model": 128, "d_mlp": 512},
        "training": {
            **PAPERS_DATA,
            "distractors": True,
            "end_token_loss": False,
            "steps": 2000,
            "batch_size": 256,
            "warmup": 200,
            "eval_every": 250,
        },
    },
}


def scheme_defaults(scheme: str) -> dict[str, Any]:
    """What ``scheme`` trains with unless told otherwise: ``{"format": ..., "model": {ModelConfig
    fields}, "training": {TrainConfig fields}}`` (copies; fields not named keep the dataclass defaults)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown position scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    d = SCHEME_DEFAULTS[scheme]
    return {"format": d["format"], "model": dict(d["model"]), "training": dict(d["training"])}
