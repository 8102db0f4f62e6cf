"""Weights compared bit for bit, training interrupted at a step, shipped checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import torch


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
