"""TopK (OpenAI, with AuxK), BatchTopK (saved as JumpReLU) and Matryoshka BatchTopK SAEs."""

from __future__ import annotations

import torch
from torch import Tensor

from sae_store.train.config import SaeConfig
from sae_store.train.sae import DeadLatents, ForwardOutput, SparseAutoencoder


class TopKSAE(SparseAutoencoder):
    """Keeps the k largest pre-activations per token (ReLU'd); AuxK revives dead latents."""

    def activation(self, hidden_pre: Tensor) -> Tensor:
        top = hidden_pre.topk(self.config.k, dim=-1, sorted=False)
        return torch.zeros_like(hidden_pre).scatter_(-1, top.indices, top.values.relu())

    def aux_loss(self, x: Tensor, sae_out: Tensor, hidden_pre: Tensor, dead: DeadLatents | None) -> Tensor:
        """The top ``aux_k`` dead latents reconstruct the residual the live ones leave (OpenAI's AuxK).

        Only the listed latents take part (the same loss as masking the others, at a fraction of the
        cost); those that fired since they were listed are left out without reading the device.
        """
        if dead is None or not len(dead.latents) or not self.training or self.config.aux_k_coefficient == 0:
            return x.new_zeros(())
        k_aux = self.config.aux_k or max(self.d_in // 2, 1)
        scale = (dead.still.sum() / k_aux).clamp(max=1.0)
        dead_pre = hidden_pre[:, dead.latents].masked_fill(~dead.still, float("-inf"))
        top = dead_pre.topk(min(k_aux, len(dead.latents)), dim=-1, sorted=False)
        values = torch.where(dead.still[top.indices], top.values, 0.0)
        acts = torch.zeros_like(dead_pre).scatter_(-1, top.indices, values)
        residual = (x - sae_out).detach()
        loss = (acts @ self.W_dec[dead.latents] - residual).pow(2).sum(-1).mean()
        return self.config.aux_k_coefficient * scale * loss


class BatchTopKSAE(TopKSAE):
    """Keeps the ``k * batch`` largest activations of the whole batch while training.

    Inference (eval mode) uses a JumpReLU with one threshold for all latents, the running mean of
    the smallest activation kept in training batches; it is saved as a JumpReLU SAE.
    """

    topk_threshold: Tensor

    def __init__(self, config: SaeConfig, *, apply_b_dec_to_input: bool = True, seed: int = 0) -> None:
        super().__init__(config, apply_b_dec_to_input=apply_b_dec_to_input, seed=seed)
        self.register_buffer("topk_threshold", torch.zeros((), dtype=torch.float64))

    def activation(self, hidden_pre: Tensor) -> Tensor:
        acts = hidden_pre.relu()
        if not self.training:
            return acts * (hidden_pre > self.topk_threshold.to(acts.dtype))
        flat = acts.flatten()
        top = flat.topk(min(self.config.k * acts.shape[0], flat.numel()), sorted=False)
        return torch.zeros_like(flat).scatter_(0, top.indices, top.values).view_as(acts)

    def _scale_thresholds(self, factor: float) -> None:
        self.topk_threshold.mul_(factor)

    @torch.no_grad()
    def after_step(self, out: ForwardOutput) -> None:
        super().after_step(out)
        # the smallest kept activation, without reading the device (none kept: the threshold stays)
        smallest = torch.where(out.latents > 0, out.latents, float("inf")).min().double()
        lr = self.config.batchtopk_threshold_lr
        moved = self.topk_threshold * (1 - lr) + lr * smallest
        self.topk_threshold.copy_(torch.where(smallest.isfinite(), moved, self.topk_threshold))


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    """BatchTopK whose nested prefixes of latents (``SaeConfig.widths()``) each reconstruct the input.

    The loss sums the squared error of every prefix's reconstruction (the full one included), as
    SAELens's Matryoshka BatchTopK does, so early latents learn general features and later ones refine
    them instead of absorbing them. Inference is the BatchTopK JumpReLU; saved as JumpReLU.
    """

    def reconstruction_loss(self, x: Tensor, latents: Tensor, sae_out: Tensor) -> Tensor:
        loss = (sae_out - x).pow(2).sum(-1).mean()
        if not self.training:
            return loss
        partial = self.b_dec.expand_as(x)
        start = 0
        for width in self.config.widths()[:-1]:
            partial = partial + latents[:, start:width] @ self.W_dec[start:width]
            loss = loss + (partial - x).pow(2).sum(-1).mean()
            start = width
        return loss
