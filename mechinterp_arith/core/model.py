"""Hooked transformers for arithmetic, built with ``TransformerBridge.boot_native``.

Every model the toolkit makes or loads is a TransformerLens 4 bridge, so TL hook names,
``run_with_cache``, ``run_with_hooks`` and ``ActivationCache`` work unchanged.

>>> from mechinterp_arith import Task
>>> task = Task("add", digits=3)
>>> model = build_model(ModelConfig.for_task(task))          # minGPT "gpt-nano" size
>>> logits, cache = model.run_with_cache(torch.zeros(2, task.n_ctx, dtype=torch.long))
>>> logits.shape, cache["blocks.0.hook_resid_post"].shape
(torch.Size([2, 15, 10]), torch.Size([2, 15, 48]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components import NormalizationBridge

from .choices import ACTIVATIONS as ACTIVATIONS  # re-exported: documented here
from .choices import SCHEMES
from .position_schemes import SCHEMES_WITH_RULE, PositionRule, attach, default_n_ctx
from .scheme_defaults import GPT_NANO, scheme_defaults
from .tasks import Task
from .typecheck import check_field_types, check_range, check_values

POSITIONS = SCHEMES  # see core/position_schemes.py
MAX_DIM = 65_536  # upper bound of every size below: a typo such as d_model 3e11 is refused, not allocated
MAX_LAYERS = 256  # building a bridge takes time per block: 65,536 blocks ran for minutes before failing
MAX_PARAMS = 10**9  # far beyond an arithmetic model; larger configs are typos that would exhaust memory


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a small pre-LayerNorm decoder (defaults: minGPT gpt-nano).

    As in minGPT, the unembedding has no bias (the bridge keeps ``unembed.bias`` as a zero buffer).
    """

    n_layers: int = GPT_NANO["n_layers"]
    n_heads: int = GPT_NANO["n_heads"]
    d_model: int = GPT_NANO["d_model"]
    d_mlp: int = GPT_NANO["d_mlp"]
    act_fn: str = "gelu_new"  # GELU, tanh form, as in minGPT
    positional: str = "learned"  # a scheme of core/position_schemes.py
    n_ctx: int = 15  # context, and rows of the position table
    d_vocab: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("n_layers", "n_heads", "d_model", "d_mlp", "n_ctx", "d_vocab"):
            check_range(name, getattr(self, name), 1, MAX_DIM)
        check_range("n_layers", self.n_layers, 1, MAX_LAYERS)
        check_range("seed", self.seed, 0, None)
        if self.n_params > MAX_PARAMS:
            raise ValueError(
                f"this model would have {self.n_params:,} parameters ({self.n_layers} layers, d_model "
                f"{self.d_model}, d_mlp {self.d_mlp}); at most {MAX_PARAMS:,}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.act_fn not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act_fn!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.positional not in POSITIONS:
            raise ValueError(f"unknown position scheme {self.positional!r}; choose one of {', '.join(POSITIONS)}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_params(self) -> int:
        """Parameters of the model (weights and biases of attention, MLP and LayerNorms; embeddings)."""
        d, m = self.d_model, self.d_mlp
        block = 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d  # attention, MLP, two LayerNorms
        return self.n_layers * block + (2 * self.d_vocab + self.n_ctx) * d + 2 * d

    @classmethod
    def for_task(cls, task: Task, **overrides: Any) -> ModelConfig:
        """A config whose context and vocabulary fit ``task``, with the architecture of its position
        scheme for every field ``overrides`` leaves out (:func:`~mechinterp_arith.core.scheme_defaults.
        scheme_defaults`: gpt-nano for learned; e.g. 1 layer, 4 heads, d_model 128 for coupling) and the
        scheme's default table size (:func:`~mechinterp_arith.core.position_schemes.default_n_ctx`).

        >>> task = Task("add", 4, format="reversed", width=8)
        >>> cfg = ModelConfig.for_task(task, positional="coupling")
        >>> (cfg.n_layers, cfg.n_heads, cfg.d_model), ModelConfig.for_task(task, positional="coupling", n_layers=2).n_layers
        ((1, 4, 128), 2)
        """
        positional = overrides.get("positional", cls.positional)
        architecture = scheme_defaults(positional)["model"] if positional in SCHEMES else {}
        n_ctx = default_n_ctx(positional, task)
        return cls(**{**architecture, "n_ctx": n_ctx, "d_vocab": task.d_vocab, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        fields = cls.__dataclass_fields__
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        check_values(cls, d)
        return cls(**d)

    def bridge_config(self) -> TransformerBridgeConfig:
        return TransformerBridgeConfig(
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            d_model=self.d_model,
            d_head=self.d_head,
            d_mlp=self.d_mlp,
            d_vocab=self.d_vocab,
            d_vocab_out=self.d_vocab,
            n_ctx=self.n_ctx,
            act_fn=self.act_fn,
            normalization_type="LN",
            positional_embedding_type="rotary" if self.positional == "rotary" else "standard",
            rotary_dim=self.d_head if self.positional == "rotary" else None,
            seed=self.seed,
            default_prepend_bos=False,
        )


def build_model(
    cfg: ModelConfig, device: str | torch.device | None = None, task: Task | None = None
) -> TransformerBridge:
    """A freshly initialised hooked model; the same ``cfg.seed`` gives the same weights.

    ``task`` is needed by the schemes whose position IDs follow the task's token layout
    (randomized, abacus, coupling: see :mod:`~mechinterp_arith.core.position_schemes`).
    ``nope`` zeroes the position table and freezes it.
    """
    if cfg.positional in SCHEMES_WITH_RULE and task is None:
        raise ValueError(f"the {cfg.positional!r} position scheme numbers the tokens of a task's layout: pass task=")
    # TL attaches boot_native with setattr (transformer_lens.model_bridge.sources.native), out of mypy's sight
    model: TransformerBridge = TransformerBridge.boot_native(cfg.bridge_config(), device=device)  # type: ignore[attr-defined]
    if cfg.positional == "nope":
        with torch.no_grad():
            model.pos_embed.W_pos.zero_()
        model.pos_embed.W_pos.requires_grad_(False)
    elif cfg.positional in SCHEMES_WITH_RULE:
        assert task is not None  # checked above
        attach(model, PositionRule(cfg.positional, task, cfg.n_ctx))
    return model


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: {e}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: no CUDA device is available to this torch ({torch.__version__}); "
            f"use --device cpu (or auto)"
        )
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use --device cpu (or auto)")
    return resolved


def model_device(model: torch.nn.Module) -> torch.device:
    """The device holding the model's parameters."""
    return next(model.parameters()).device


def n_params(model: torch.nn.Module) -> int:
    """How many parameters the model has (86,592 for the shipped add3)."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def fused_layernorm(model: TransformerBridge) -> Iterator[TransformerBridge]:
    """Run LayerNorms through torch's fused kernel (forward and backward) inside the block.

    The bridge computes LayerNorm from scratch by default so that hook edits propagate; that costs
    extra autograd nodes in training. Inside this block observation hooks still fire and edits
    still work (TL falls back and warns); outputs agree to float rounding. Training uses it.
    """
    norms = [m for m in model.modules() if isinstance(m, NormalizationBridge)]
    before = [m.use_native_layernorm_autograd for m in norms]
    for m in norms:
        m.use_native_layernorm_autograd = True
    try:
        yield model
    finally:
        for m, b in zip(norms, before):
            m.use_native_layernorm_autograd = b
