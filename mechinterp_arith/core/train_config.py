"""Training settings: optimisation, data and bookkeeping (the architecture lives in ModelConfig).

>>> cfg = TrainConfig(steps=1000, warmup=200, snapshot_every=100)
>>> round(lr_at(0, cfg), 6), round(lr_at(199, cfg), 6), round(lr_at(999, cfg), 6)   # warmup, peak, cosine end
(1.5e-05, 0.003, 0.0003)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

BATCH_RNGS = ("seedsequence", "arithmetic")
FORWARDS = ("auto", "plain", "bridge")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and bookkeeping settings (model architecture lives in ModelConfig)."""

    # the default recipe (docs/training.md): add3 reaches 100% on its 10,000 held-out pairs after
    # 325-975 steps (6 seeds) with target_accuracy=1.0; version 0.1.0 used batch 256, warmup 200,
    # steps 5000, eval every 250 on 2000 pairs
    steps: int = 2000  # upper bound and cosine horizon; training stops earlier at target_accuracy
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 50
    schedule: str = "cosine"  # or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0  # batch order
    data_seed: int = 0  # which pairs are train and test
    n_train: int | None = None  # default: the study's 10,000 (or 80% of all pairs when fewer)
    n_test: int | None = None
    eval_every: int = 50
    eval_n: int = 500  # held-out ID pairs (and OOD pairs) scored at each evaluation
    ood_digits: int | None = None  # default n + 1 when the format holds it
    target_accuracy: float | None = None  # stop once held-out ID exact match reaches this
    snapshot_every: int | None = None  # keep weights every K steps for training-dynamics analyses
    device: str = "auto"
    # how the batch order is derived from ``seed``: "seedsequence" (numpy's SeedSequence), or
    # "arithmetic" (seed * 1_000_003 + step), the derivation of version 0.1.0, which the shipped
    # checkpoints were trained with; their recorded commands pass --batch-rng arithmetic
    batch_rng: str = "seedsequence"
    # the forward of training steps: "plain" (the bridge's weights through a batched plain-tensor
    # forward, core/stacked_forward.py; the same function to float rounding, several times faster),
    # "bridge" (the hooked bridge's own forward: version 0.1.0's step, which trained the shipped
    # checkpoints; their recorded commands pass --forward bridge), or "auto" (plain when it can run
    # the architecture, else bridge)
    forward: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_rng not in BATCH_RNGS:
            raise ValueError(f"unknown batch_rng {self.batch_rng!r}; choose one of {', '.join(BATCH_RNGS)}")
        if self.forward not in FORWARDS:
            raise ValueError(f"unknown forward {self.forward!r}; choose one of {', '.join(FORWARDS)}")
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
        """The config of a ``to_dict()`` mapping. Configs written before ``batch_rng`` and
        ``forward`` existed (version 0.1.0) used the "arithmetic" batch order and the bridge forward."""
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        d.setdefault("batch_rng", "arithmetic")
        d.setdefault("forward", "bridge")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for ``step`` (0-based): linear warmup, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
