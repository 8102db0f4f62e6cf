"""Training settings: optimisation, data and bookkeeping (the architecture lives in ModelConfig).

>>> cfg = TrainConfig(steps=1000, warmup=200, snapshot_every=100)
>>> round(lr_at(0, cfg), 6), round(lr_at(199, cfg), 6), round(lr_at(999, cfg), 6)   # warmup, peak, cosine end
(1.5e-05, 0.003, 0.0003)

With a target accuracy, the rate anneals once the ID sample reaches ``anneal_at`` (here at step 400):

>>> cfg = TrainConfig(steps=1000, warmup=200, target_accuracy=1.0, anneal_at=0.9, anneal_steps=100)
>>> [round(lr_at(s, cfg, anneal_from=400), 6) for s in (399, 400, 450, 500, 900)]
[0.002608, 0.002605, 0.001433, 0.00026, 0.00026]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from .choices import MAX_SAMPLES
from .scheme_defaults import scheme_defaults
from .typecheck import check_field_types, check_range, check_values

BATCH_RNGS = ("seedsequence", "arithmetic")
OFF_WHEN_NONE = ("anneal_at",)  # settings whose default is a value: None, written OFF, turns them off
OFF = "off"  # None of those settings in recorded commands, on the command line and in sweep specs
FORWARDS = ("auto", "plain", "bridge")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and bookkeeping settings (model architecture lives in ModelConfig)."""

    # the default recipe (docs/training.md): add3 reaches 100% on its 10,000 held-out pairs after
    # 300-550 steps (6 seeds) with target_accuracy=1.0; version 0.1.0 used batch 256, warmup 200,
    # steps 5000, eval every 250 on 2000 pairs, no annealing
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
    # with a target_accuracy: once an evaluation finds the ID sample's exact match >= anneal_at, the
    # learning rate anneals (cosine) from its value then to min_lr_ratio of it over anneal_steps steps
    # and stays there; None: never. Runs without a target follow the fixed schedule. It removes the
    # slow tail of runs that oscillate just below 100% (docs/training.md); configs written before it
    # existed read as None.
    anneal_at: float | None = 0.9
    anneal_steps: int = 75
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
    # length generalisation (docs/length_generalisation.md); None: the position scheme's default
    # (core/scheme_defaults.py), resolved when training starts and recorded resolved.
    # operand_lengths: "uniform" pairs over [0, 10^n)^2 (the study's), "mixed": each operand's digit
    # count uniform in 1..n (the position-coupling and abacus papers), or the follow-up's sets
    # (docs/follow_up.md): "either" (the longer operand has exactly n digits), "both" (both have n),
    # "either:4-5" (equal shares of lengths 4 and 5; n = 5); see data.check_operand_lengths
    operand_lengths: str | None = None
    # random position IDs while training: offsets (abacus, coupling), a random subset (randomized)
    random_positions: bool | None = None
    # distractor digits while training (abacus, coupling; needs random_positions): the operands' zero
    # padding that attention cannot see becomes random digits, visible, at position IDs outside the
    # example's own (PositionRule.training_inputs); they teach attention to ignore digits whose ID is not
    # the one it reads, as longer operands bring them. None: the scheme's default
    distractors: bool | None = None
    # the fixed-length formats' end token as a training target. Decoding reads the format's answer
    # digits and never generates it, so it teaches nothing the evaluation reads; under coupling it
    # teaches where the trained width's answer ends (a fixed distance from "="), which the model then
    # applies past the width. Unpadded formats always train it (it ends their answers). None: the
    # scheme's default
    end_token_loss: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # as read from JSON
            object.__setattr__(self, "betas", tuple(self.betas))
        check_field_types(self)
        _check_ranges(self)
        if self.batch_rng not in BATCH_RNGS:
            raise ValueError(f"unknown batch_rng {self.batch_rng!r}; choose one of {', '.join(BATCH_RNGS)}")
        if self.forward not in FORWARDS:
            raise ValueError(f"unknown forward {self.forward!r}; choose one of {', '.join(FORWARDS)}")
        if self.operand_lengths is not None:
            from .data import check_operand_lengths  # here: TrainConfig itself needs no torch

            check_operand_lengths(self.operand_lengths)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        for name in ("target_accuracy", "anneal_at"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not 0 <= self.betas[0] < 1 or not 0 <= self.betas[1] < 1:
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError(f"lr and grad_clip must be > 0, got {self.lr} and {self.grad_clip}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def for_scheme(cls, positional: str, **settings: Any) -> TrainConfig:
        """The config a position scheme trains with: ``settings`` as given, the others the scheme's
        defaults (:func:`~mechinterp_arith.core.scheme_defaults.scheme_defaults`), then the class's.

        >>> study = TrainConfig(operand_lengths="uniform", random_positions=False, distractors=False, end_token_loss=True)
        >>> TrainConfig.for_scheme("learned") == study
        True
        >>> TrainConfig.for_scheme("coupling", steps=500).steps, TrainConfig.for_scheme("coupling").operand_lengths
        (500, 'mixed')
        """
        defaults = {k: v for k, v in scheme_defaults(positional)["training"].items() if k not in RESOLVED_AT_START}
        return with_scheme_defaults(cls(**{**defaults, **settings}), positional)

    @classmethod
    def from_dict(cls, d: dict[str, Any], written_before: bool = True) -> TrainConfig:
        """The config of a ``to_dict()`` mapping; ValueError names an unknown key or a bad value.
        ``written_before``: a key missing from ``d`` takes the value that config was trained with
        (:data:`BEFORE_THE_KEY`; e.g. a checkpoint's config from version 0.1.0); False: today's default."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        values = {**(BEFORE_THE_KEY if written_before else {}), **d}
        check_values(cls, values)
        if isinstance(values.get("betas"), list):  # JSON has no tuples
            values["betas"] = tuple(values["betas"])
        return cls(**values)


# settings a None leaves to the position scheme, resolved when training starts (with_scheme_defaults;
# distractors follow random positions, which place them)
RESOLVED_AT_START = ("operand_lengths", "random_positions", "end_token_loss", "distractors")

# what a config written before each of these keys existed was trained with: version 0.1.0 used the
# "arithmetic" batch order, the bridge forward and uniform operand pairs; annealing came later
BEFORE_THE_KEY = {
    "batch_rng": "arithmetic",
    "forward": "bridge",
    "operand_lengths": "uniform",
    "anneal_at": None,
    "distractors": False,
    "end_token_loss": True,
}


# (low, high) of each numeric setting; None: unbounded. Counts of pairs stop at data.MAX_SAMPLES.
_RANGES = {
    "steps": (1, 10**9),
    "batch_size": (1, MAX_SAMPLES),
    "weight_decay": (0, None),
    "warmup": (0, None),
    "min_lr_ratio": (0, 1),
    "seed": (0, None),
    "data_seed": (0, None),
    "n_train": (1, MAX_SAMPLES),
    "n_test": (1, MAX_SAMPLES),
    "eval_every": (1, None),
    "eval_n": (1, MAX_SAMPLES),
    "ood_digits": (1, None),
    "snapshot_every": (1, None),
    "anneal_steps": (1, None),
}


def _check_ranges(cfg: TrainConfig) -> None:
    for name, (low, high) in _RANGES.items():
        value = getattr(cfg, name)
        if value is not None:
            check_range(name, value, low, high)


def with_scheme_defaults(cfg: TrainConfig, positional: str) -> TrainConfig:
    """``cfg`` with the settings left None set to the position scheme's defaults
    (:func:`~mechinterp_arith.core.scheme_defaults.scheme_defaults`). ValueError for random
    positions under a scheme that numbers tokens 0, 1, 2, ... (learned, rotary, nope)."""
    from .position_schemes import HIDES_PADDING, SCHEMES_WITH_RULE  # here: TrainConfig itself needs no torch

    defaults = scheme_defaults(positional)["training"]
    plain = {"end_token_loss": True, "distractors": False}  # a scheme that names neither
    cfg = replace(
        cfg,
        **{
            k: defaults.get(k, plain.get(k))
            for k in RESOLVED_AT_START
            if k != "distractors" and getattr(cfg, k) is None
        },
    )
    if cfg.distractors is None:  # the scheme's default, where its positions are random (they place the distractors)
        cfg = replace(cfg, distractors=bool(defaults.get("distractors", False) and cfg.random_positions))
    if cfg.random_positions and positional not in SCHEMES_WITH_RULE:
        raise ValueError(
            f"random positions need a scheme with a position rule ({', '.join(SCHEMES_WITH_RULE)}); "
            f"{positional!r} numbers tokens 0, 1, 2, ..."
        )
    if cfg.distractors and (positional not in HIDES_PADDING or not cfg.random_positions):
        raise ValueError(
            f"distractors fill the zero padding that {' and '.join(HIDES_PADDING)} hide, at position IDs "
            f"away from the example's random offset: they need one of those schemes and random positions "
            f"(got {positional!r}, random positions {'on' if cfg.random_positions else 'off'})"
        )
    return cfg


def lr_at(step: int, cfg: TrainConfig, anneal_from: int | None = None) -> float:
    """Learning rate for ``step`` (0-based): linear warmup, then cosine decay to min_lr_ratio * lr
    (or constant). ``anneal_from``: the step from which the rate anneals (``anneal_at``; see
    :func:`anneal_start`): cosine from its value then to min_lr_ratio of it over ``anneal_steps``."""
    if anneal_from is not None and step >= anneal_from:
        start = lr_at(anneal_from, cfg)
        return start * _cosine(cfg.min_lr_ratio, (step - anneal_from) / cfg.anneal_steps)
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    return cfg.lr * _cosine(cfg.min_lr_ratio, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))


def _cosine(floor: float, progress: float) -> float:
    """1 at progress 0, ``floor`` at progress >= 1."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def anneal_start(cfg: TrainConfig, history: list[dict[str, Any]]) -> int | None:
    """The step from which a run's rate anneals: that of its first evaluation whose ID sample
    reached ``cfg.anneal_at`` (``history``: its rows so far, with ``step`` and ``id_exact``); None
    while none has, when ``anneal_at`` is None, or without a ``target_accuracy``. A pure function of
    the history, so a resumed run anneals from the same step."""
    if cfg.anneal_at is None or cfg.target_accuracy is None:
        return None
    return next((int(r["step"]) for r in history if r.get("id_exact", -1.0) >= cfg.anneal_at), None)
