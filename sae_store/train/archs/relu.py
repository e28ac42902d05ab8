"""ReLU SAEs with Anthropic's decoder-norm-weighted L1 penalty."""

from __future__ import annotations

from torch import Tensor

from sae_store.train.sae import SparseAutoencoder


class ReluSAE(SparseAutoencoder):
    """ReLU latents with an L1 penalty weighted by decoder row norms (no unit-norm constraint)."""

    unit_norm_decoder = False

    def activation(self, hidden_pre: Tensor) -> Tensor:
        return hidden_pre.relu()

    def sparsity_loss(self, latents: Tensor, hidden_pre: Tensor) -> Tensor:
        weighted = latents * self.W_dec.norm(dim=1)
        return self.config.l1_coefficient * weighted.sum(-1).mean()
