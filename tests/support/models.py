"""Weights compared bit for bit, training interrupted at a step, shipped checkpoints, a tiny checkpoint
per position scheme."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import torch

from mechinterp_arith import Task


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every tensor of ``model``'s state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(
    a: torch.nn.Module | Mapping[str, torch.Tensor], b: torch.nn.Module | Mapping[str, torch.Tensor]
) -> bool:
    """Whether two models (or state dicts) hold the same tensors, bit for bit."""
    wa = a.state_dict() if isinstance(a, torch.nn.Module) else a
    wb = b.state_dict() if isinstance(b, torch.nn.Module) else b
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def interrupt_at(step: int | None = None) -> Callable[..., None]:
    """A training callback that raises KeyboardInterrupt at evaluation ``step`` (None: the first)."""

    def interrupt(at: int, model: torch.nn.Module, row: dict) -> None:
        if step is None or at == step:
            raise KeyboardInterrupt

    return interrupt


def shipped(name: str):
    """A shipped checkpoint on the CPU; skip only when it is absent (a corrupt one fails)."""
    from mechinterp_arith.core.checkpoint import CheckpointError, load, resolve_checkpoint

    try:
        path = resolve_checkpoint(name)
    except CheckpointError:
        pytest.skip(f"checkpoint {name} is not shipped")
    return load(path, device="cpu")


SCHEME_TASKS = {  # 2-digit addition, width 3 (one longer operand fits)
    "reversed": Task("add", 2, format="reversed", width=3),
    "follow_up": Task("add", 2, format="reversed", width=3, bos=True),  # the follow-up's format: a BOS token first
}


def scheme_checkpoints(root) -> dict:
    """A tiny untrained checkpoint per position scheme and format (the analyses' plumbing, not their
    findings, is tested), saved under ``root``: ``(scheme, fmt) -> path``, ``fmt`` a key of :data:`SCHEME_TASKS`."""
    from mechinterp_arith import ModelConfig, save_checkpoint
    from mechinterp_arith.core.model import build_model
    from mechinterp_arith.core.position_schemes import SCHEMES

    out = {}
    for scheme in SCHEMES:
        for fmt, task in SCHEME_TASKS.items():
            cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional=scheme, seed=5)
            name = scheme if fmt == "reversed" else f"{scheme}_{fmt}"
            out[(scheme, fmt)] = save_checkpoint(root / name, build_model(cfg, task=task), task, cfg)
    return out


def moved_model(scheme: str, task, seed: int = 3, n_layers: int = 2):
    """A seeded small model (2 heads, d_model 16) of ``scheme`` for ``task``, its weights moved off their
    initialisation (larger, varied logits): what the forwards are compared on."""
    from mechinterp_arith import ModelConfig, build_model

    cfg = ModelConfig.for_task(task, n_layers=n_layers, n_heads=2, d_model=16, d_mlp=32, positional=scheme, seed=seed)
    model = build_model(cfg, task=task).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model, cfg
