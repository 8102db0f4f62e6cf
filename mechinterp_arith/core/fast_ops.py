"""Differentiable kernels for training tiny models fast: GELU (tanh form) and causal softmax.

torch's own CPU kernels for these are slow on the toolkit's shapes: ``F.gelu(approximate="tanh")``
and ``softmax`` over a last dimension of 15 run at 5-80 ns per element, while the same functions
written as a few vectorised elementwise ops with a hand-derived backward run at ~1 ns per element
(measured in ``benchmarks/train.py``; docs/training.md). Both are the same functions as torch's to
float rounding (checked in tests/test_fast_ops.py) and run on any device.

>>> x = torch.randn(4, 8, requires_grad=True)
>>> torch.allclose(gelu_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-6)
True
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import once_differentiable

_K = 2 * math.sqrt(2 / math.pi)  # 0.5 (1 + tanh z) == sigmoid(2 z)
_A = 0.044715


class _GeluTanh(torch.autograd.Function):
    """``x * sigmoid(K (x + A x^3))`` (minGPT's NewGELU) with its derivative written out."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        gate = x * x
        gate.mul_(_A * _K).add_(_K).mul_(x).sigmoid_()
        ctx.save_for_backward(x, gate)
        return x * gate

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        x, gate = ctx.saved_tensors
        # d/dx x s(z) = s (1 + (1 - s) x z'),  x z' = K x (1 + 3 A x^2)
        slope = x * x
        slope.mul_(3 * _A * _K).add_(_K).mul_(x).mul_(1 - gate).add_(1).mul_(gate)
        return grad * slope


def gelu_tanh(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GELU, tanh form (``F.gelu(x, approximate="tanh")``), differentiable and fast on CPUs."""
    return _GeluTanh.apply(x)


class _MaskedSoftmax(torch.autograd.Function):
    """Softmax over the last dimension of ``scores + additive_mask`` (mask: 0 or -inf)."""

    @staticmethod
    def forward(ctx, scores: Tensor, additive_mask: Tensor) -> Tensor:
        p = scores + additive_mask
        p.sub_(p.amax(-1, keepdim=True)).exp_()
        p.div_(p.sum(-1, keepdim=True))
        ctx.save_for_backward(p)
        return p

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (p,) = ctx.saved_tensors
        g = grad * p
        g.sub_(p * g.sum(-1, keepdim=True))
        return g, None


def causal_mask(n_queries: int, n_keys: int, device=None, dtype=torch.float32) -> Float[Tensor, "q k"]:
    """Additive mask: 0 where key position <= query position, -inf after; the queries are the last
    ``n_queries`` of the ``n_keys`` positions."""
    future = torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).triu(n_keys - n_queries + 1)
    return torch.zeros(n_queries, n_keys, device=device, dtype=dtype).masked_fill_(future, float("-inf"))


def masked_softmax(scores: Float[Tensor, "... q k"], additive_mask: Float[Tensor, "q k"]) -> Float[Tensor, "... q k"]:
    """``softmax(scores + additive_mask, -1)``, differentiable in ``scores``; every query row must
    keep at least one key (a causal mask does)."""
    return _MaskedSoftmax.apply(scores, additive_mask)
