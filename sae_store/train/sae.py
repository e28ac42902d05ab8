"""Sparse autoencoders as plain torch modules: TopK, BatchTopK, ReLU (L1), JumpReLU and Matryoshka
BatchTopK.

Every architecture shares the SAELens parameter layout (``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae],
``W_dec`` [d_sae, d_in], ``b_dec`` [d_in]) and computation::

    hidden_pre = (x - b_dec) @ W_enc + b_enc      # without "- b_dec" when apply_b_dec_to_input=False
    latents    = activation(hidden_pre)            # architecture-specific, always >= 0
    sae_out    = latents @ W_dec + b_dec

Decoder norms, per architecture:

- ``topk``, ``batchtopk``, ``jumprelu``, ``matryoshka_batchtopk``: decoder rows are kept at the norm
  ``SaeConfig.decoder_init_norm`` during training (the gradient component along each row is removed
  before the step and rows are rescaled after); :meth:`SparseAutoencoder.fold_decoder_norm` turns them
  into unit-norm rows with the same reconstruction before saving.
- ``relu``: rows start at ``decoder_init_norm`` and are unconstrained; the L1 penalty weights each
  latent by its decoder row norm (Anthropic's 2024 recipe), so shrinking latents by growing rows does
  not pay.

All encoders start as the decoder's transpose.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from sae_store.errors import ConfigError
from sae_store.train.config import SaeConfig


class ForwardOutput(NamedTuple):
    """What one forward pass computes; losses are scalars, ``loss`` is what training minimises."""

    sae_out: Tensor
    """Reconstruction [batch, d_in]."""
    latents: Tensor
    """Feature activations [batch, d_sae], non-negative and sparse."""
    hidden_pre: Tensor
    """Pre-activations [batch, d_sae]."""
    mse_loss: Tensor
    """Squared error summed over d_in, averaged over the batch (Matryoshka, training: summed over its
    nested prefixes)."""
    aux_loss: Tensor
    """AuxK dead-latent loss times its coefficient (topk, batchtopk); 0 otherwise."""
    sparsity_loss: Tensor
    """Sparsity penalty times its (warmed-up) coefficient (relu: weighted L1, jumprelu: L0); 0 otherwise."""
    loss: Tensor
    """``mse_loss + aux_loss + sparsity_loss``."""


class SparseAutoencoder(nn.Module):
    """Base class: parameters, encode/decode/forward and the per-step decoder-norm handling."""

    architecture: ClassVar[str]
    unit_norm_decoder: ClassVar[bool] = True

    def __init__(self, config: SaeConfig, *, apply_b_dec_to_input: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.apply_b_dec_to_input = apply_b_dec_to_input
        d_in, d_sae = config.d_in, config.n_latents
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(d_sae, d_in, generator=gen)
        W_dec *= self.decoder_norm / W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @property
    def decoder_norm(self) -> float:
        """Decoder row norm at initialisation (kept while training when the decoder is constrained)."""
        return self.config.decoder_init_norm or 1.0

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def pre_activation(self, x: Tensor) -> Tensor:
        sae_in = x - self.b_dec if self.apply_b_dec_to_input else x
        return sae_in @ self.W_enc + self.b_enc

    def activation(self, hidden_pre: Tensor) -> Tensor:
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations [..., d_sae] of inputs [..., d_in]."""
        return self.activation(self.pre_activation(x))

    def decode(self, latents: Tensor) -> Tensor:
        """Reconstruction [..., d_in] from feature activations [..., d_sae]."""
        return latents @ self.W_dec + self.b_dec

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> ForwardOutput:
        """Encode, decode and compute the losses of a batch ``x`` [batch, d_in].

        ``dead_mask`` [d_sae] marks latents that have not fired recently (used by AuxK);
        ``sparsity_scale`` in [0, 1] is the warm-up factor of the sparsity coefficient.
        """
        hidden_pre = self.pre_activation(x)
        latents = self.activation(hidden_pre)
        sae_out = self.decode(latents)
        mse = self.reconstruction_loss(x, latents, sae_out)
        aux = self.aux_loss(x, sae_out, hidden_pre, dead_mask)
        sparsity = sparsity_scale * self.sparsity_loss(latents, hidden_pre)
        return ForwardOutput(sae_out, latents, hidden_pre, mse, aux, sparsity, mse + aux + sparsity)

    def reconstruction_loss(self, x: Tensor, latents: Tensor, sae_out: Tensor) -> Tensor:
        """Squared error summed over d_in, averaged over the batch."""
        return (sae_out - x).pow(2).sum(-1).mean()

    def aux_loss(self, x: Tensor, sae_out: Tensor, hidden_pre: Tensor, dead_mask: Tensor | None) -> Tensor:
        return x.new_zeros(())

    def sparsity_loss(self, latents: Tensor, hidden_pre: Tensor) -> Tensor:
        return latents.new_zeros(())

    @torch.no_grad()
    def before_step(self) -> None:
        """Remove the gradient component along each (fixed-norm) decoder row."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec / self.decoder_norm**2

    @torch.no_grad()
    def after_step(self, out: ForwardOutput) -> None:
        """Rescale decoder rows to their fixed norm (and update running statistics) after a step."""
        if self.unit_norm_decoder:
            norms = self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps)
            self.W_dec.mul_(self.decoder_norm / norms)

    @torch.no_grad()
    def fold_decoder_norm(self) -> None:
        """Give a norm-constrained decoder unit-norm rows without changing what the SAE computes.

        Rows trained at norm ``c`` are divided by ``c`` and the latents (encoder, its bias and any
        threshold) multiplied by it; every latent scales by the same factor, so top-k choices and the
        reconstruction stay the same. Models whose decoder is unconstrained are left as they are.
        """
        c = self.decoder_norm
        if not self.unit_norm_decoder or c == 1.0:
            return
        self.W_dec.div_(c)
        self.W_enc.mul_(c)
        self.b_enc.mul_(c)
        self._scale_thresholds(c)
        self.config = replace(self.config, decoder_init_norm=1.0)

    def _scale_thresholds(self, factor: float) -> None:
        """Multiply inference thresholds (if the architecture has any) by ``factor``."""

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Make a model trained on ``x * scale`` work on raw ``x`` with identical latents.

        hidden_pre is unchanged (so are thresholds and top-k choices); the output is divided by
        ``scale``. This is SAELens's ``fold_activation_norm_scaling_factor``.
        """
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)


class TopKSAE(SparseAutoencoder):
    """Keeps the k largest pre-activations per token (ReLU'd); AuxK revives dead latents."""

    architecture = "topk"

    def activation(self, hidden_pre: Tensor) -> Tensor:
        top = hidden_pre.topk(self.config.k, dim=-1, sorted=False)
        return torch.zeros_like(hidden_pre).scatter_(-1, top.indices, top.values.relu())

    def aux_loss(self, x: Tensor, sae_out: Tensor, hidden_pre: Tensor, dead_mask: Tensor | None) -> Tensor:
        """The top ``aux_k`` dead latents reconstruct the residual the live ones leave (OpenAI's AuxK)."""
        if dead_mask is None or not self.training or self.config.aux_k_coefficient == 0:
            return x.new_zeros(())
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return x.new_zeros(())
        k_aux = self.config.aux_k or max(self.d_in // 2, 1)
        scale = min(n_dead / k_aux, 1.0)
        # only the dead columns take part: the same loss as masking the others, at n_dead / d_sae the cost
        dead = dead_mask.nonzero().squeeze(1)
        dead_pre = hidden_pre[:, dead]
        top = dead_pre.topk(min(k_aux, n_dead), dim=-1, sorted=False)
        acts = torch.zeros_like(dead_pre).scatter_(-1, top.indices, top.values)
        residual = (x - sae_out).detach()
        loss = (acts @ self.W_dec[dead] - residual).pow(2).sum(-1).mean()
        return self.config.aux_k_coefficient * scale * loss


class BatchTopKSAE(TopKSAE):
    """Keeps the ``k * batch`` largest activations of the whole batch while training.

    Inference (eval mode) uses a JumpReLU with one threshold for all latents, the running mean of
    the smallest activation kept in training batches; it is saved as a JumpReLU SAE.
    """

    architecture = "batchtopk"
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
        positive = out.latents[out.latents > 0]
        if positive.numel():
            lr = self.config.batchtopk_threshold_lr
            self.topk_threshold.mul_(1 - lr).add_(lr * positive.min().double())


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    """BatchTopK whose nested prefixes of latents (``SaeConfig.widths()``) each reconstruct the input.

    The loss sums the squared error of every prefix's reconstruction (the full one included), as
    SAELens's Matryoshka BatchTopK does, so early latents learn general features and later ones refine
    them instead of absorbing them. Inference is the BatchTopK JumpReLU; saved as JumpReLU.
    """

    architecture = "matryoshka_batchtopk"

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


class ReluSAE(SparseAutoencoder):
    """ReLU latents with an L1 penalty weighted by decoder row norms (no unit-norm constraint)."""

    architecture = "relu"
    unit_norm_decoder = False

    def activation(self, hidden_pre: Tensor) -> Tensor:
        return hidden_pre.relu()

    def sparsity_loss(self, latents: Tensor, hidden_pre: Tensor) -> Tensor:
        weighted = latents * self.W_dec.norm(dim=1)
        return self.config.l1_coefficient * weighted.sum(-1).mean()


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

    architecture = "jumprelu"

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


SAE_CLASSES: dict[str, type[SparseAutoencoder]] = {
    cls.architecture: cls for cls in (TopKSAE, BatchTopKSAE, ReluSAE, JumpReLUSAE, MatryoshkaBatchTopKSAE)
}


def build_sae(config: SaeConfig, *, apply_b_dec_to_input: bool = True, seed: int = 0) -> SparseAutoencoder:
    """A freshly initialised SAE of ``config.architecture`` (``config.d_in`` must be set)."""
    if not config.d_in:
        raise ConfigError("SaeConfig.d_in is 0; set it to the input width (the store's hidden size)")
    return SAE_CLASSES[config.architecture](config, apply_b_dec_to_input=apply_b_dec_to_input, seed=seed)
