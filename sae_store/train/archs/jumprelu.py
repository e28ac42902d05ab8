"""JumpReLU SAEs (Gemma Scope): a learned threshold per latent, trained with an L0 penalty."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sae_store.train.config import SaeConfig
from sae_store.train.sae import ForwardOutput, SparseAutoencoder


def _rectangle(z: Tensor) -> Tensor:
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


def _sum_to_threshold(grad: Tensor, threshold: Tensor) -> Tensor:
    return grad.reshape(-1, threshold.shape[-1]).sum(0)


class _JumpReLUFn(torch.autograd.Function):
    """x * H(x - theta); gradient to theta by a rectangle-kernel straight-through estimator."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        x, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        x_grad = (x > threshold) * grad
        t_grad = -(threshold / bw) * _rectangle((x - threshold) / bw) * grad
        return x_grad, _sum_to_threshold(t_grad, threshold), None


class _StepFn(torch.autograd.Function):
    """H(x - theta) for the L0 penalty; gradient only to theta (Gemma Scope's estimator)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        x, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        t_grad = -(1.0 / bw) * _rectangle((x - threshold) / bw) * grad
        return torch.zeros_like(x), _sum_to_threshold(t_grad, threshold), None


class JumpReLUSAE(SparseAutoencoder):
    """``relu(h) * (h > threshold)`` with a learned threshold per latent and an L0 penalty."""

    def __init__(self, config: SaeConfig, *, apply_b_dec_to_input: bool = True, seed: int = 0) -> None:
        super().__init__(config, apply_b_dec_to_input=apply_b_dec_to_input, seed=seed)
        self.threshold = nn.Parameter(torch.full((self.d_sae,), config.jumprelu_init_threshold))

    def activation(self, hidden_pre: Tensor) -> Tensor:
        if self.training:
            return _JumpReLUFn.apply(hidden_pre, self.threshold, self.config.jumprelu_bandwidth)
        return hidden_pre.relu() * (hidden_pre > self.threshold)

    def sparsity_loss(self, latents: Tensor, hidden_pre: Tensor) -> Tensor:
        l0 = _StepFn.apply(hidden_pre, self.threshold, self.config.jumprelu_bandwidth)
        return self.config.l0_coefficient * l0.sum(-1).mean()

    def _scale_thresholds(self, factor: float) -> None:
        self.threshold.mul_(factor)

    @torch.no_grad()
    def after_step(self, out: ForwardOutput) -> None:
        super().after_step(out)
        self.threshold.clamp_(min=0.0)
