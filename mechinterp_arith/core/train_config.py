"""Training settings: optimisation, data and bookkeeping (the architecture lives in ModelConfig).

>>> cfg = TrainConfig(steps=1000, snapshot_every=100)
>>> round(lr_at(0, cfg), 6), round(lr_at(199, cfg), 6), round(lr_at(999, cfg), 6)   # warmup, peak, cosine end
(1.5e-05, 0.003, 0.0003)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .position_schemes import RULED, scheme_defaults

BATCH_RNGS = ("seedsequence", "arithmetic")
OPERAND_LENGTHS = ("uniform", "mixed")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and bookkeeping settings (model architecture lives in ModelConfig)."""

    steps: int = 5000  # upper bound; training stops earlier at target_accuracy
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 200
    schedule: str = "cosine"  # or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0  # batch order
    data_seed: int = 0  # which pairs are train and test
    n_train: int | None = None  # default: the study's 10,000 (or 80% of all pairs when fewer)
    n_test: int | None = None
    eval_every: int = 250
    eval_n: int = 2000  # held-out ID pairs (and OOD pairs) scored at each evaluation
    ood_digits: int | None = None  # default n + 1 when the format holds it
    target_accuracy: float | None = None  # stop once held-out ID exact match reaches this
    snapshot_every: int | None = None  # keep weights every K steps for training-dynamics analyses
    device: str = "auto"
    # how the batch order is derived from ``seed``: "seedsequence" (numpy's SeedSequence), or
    # "arithmetic" (seed * 1_000_003 + step), the derivation of version 0.1.0, which the shipped
    # checkpoints were trained with; their recorded commands pass --batch-rng arithmetic
    batch_rng: str = "seedsequence"
    # length generalisation (docs/length_generalisation.md); None: the position scheme's default
    # (core/position_schemes.scheme_defaults), resolved when training starts and recorded resolved.
    # operand_lengths: "uniform" pairs over [0, 10^n)^2 (the study's), or "mixed": each operand's digit
    # count uniform in 1..n (the position-coupling and abacus papers)
    operand_lengths: str | None = None
    # random position IDs while training: offsets (abacus, coupling), a random subset (randomized)
    random_positions: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_rng not in BATCH_RNGS:
            raise ValueError(f"unknown batch_rng {self.batch_rng!r}; choose one of {', '.join(BATCH_RNGS)}")
        if self.operand_lengths not in (None, *OPERAND_LENGTHS):
            raise ValueError(f"unknown operand_lengths {self.operand_lengths!r}; choose one of {', '.join(OPERAND_LENGTHS)}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of a ``to_dict()`` mapping. Configs written before ``batch_rng`` existed
        (version 0.1.0) used the "arithmetic" batch order."""
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        d.setdefault("batch_rng", "arithmetic")
        d.setdefault("operand_lengths", "uniform")  # configs written before mixed lengths existed
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def with_scheme_defaults(cfg: TrainConfig, positional: str) -> TrainConfig:
    """``cfg`` with the settings left None set to the position scheme's defaults
    (:func:`~mechinterp_arith.core.position_schemes.scheme_defaults`). ValueError for random
    positions under a scheme that numbers tokens 0, 1, 2, ... (learned, rotary, nope)."""
    defaults = scheme_defaults(positional)
    cfg = replace(cfg, **{k: defaults[k] for k in ("operand_lengths", "random_positions") if getattr(cfg, k) is None})
    if cfg.random_positions and positional not in RULED:
        raise ValueError(f"random positions need a scheme with a position rule ({', '.join(RULED)}); "
                         f"{positional!r} numbers tokens 0, 1, 2, ...")
    return cfg


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for ``step`` (0-based): linear warmup, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
