"""Sparse autoencoders as plain torch modules: the base class every architecture derives from.

The architectures (TopK, BatchTopK and Matryoshka BatchTopK in :mod:`.archs.topk`, ReLU (L1) in
:mod:`.archs.relu`, JumpReLU in :mod:`.archs.jumprelu`) are registered in
:mod:`sae_store.train.architectures`.

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
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from sae_store.errors import ConfigError
from sae_store.train.architectures import ARCHITECTURES
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


class DeadLatents(NamedTuple):
    """The latents AuxK may use in a step, in a shape the host knows without reading the device."""

    latents: Tensor
    """[n] latents that were dead at the trainer's last read of the device."""
    still: Tensor
    """[n] bool: which of them are still dead (have not fired since)."""


class SparseAutoencoder(nn.Module):
    """Base class: parameters, encode/decode/forward and the per-step decoder-norm handling."""

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
    def architecture(self) -> str:
        return self.config.architecture

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
        self, x: Tensor, *, dead: DeadLatents | None = None, sparsity_scale: float = 1.0
    ) -> ForwardOutput:
        """Encode, decode and compute the losses of a batch ``x`` [batch, d_in].

        ``dead`` lists latents that have not fired recently (used by AuxK);
        ``sparsity_scale`` in [0, 1] is the warm-up factor of the sparsity coefficient.
        """
        hidden_pre = self.pre_activation(x)
        latents = self.activation(hidden_pre)
        sae_out = self.decode(latents)
        mse = self.reconstruction_loss(x, latents, sae_out)
        aux = self.aux_loss(x, sae_out, hidden_pre, dead)
        sparsity = sparsity_scale * self.sparsity_loss(latents, hidden_pre)
        return ForwardOutput(sae_out, latents, hidden_pre, mse, aux, sparsity, mse + aux + sparsity)

    def reconstruction_loss(self, x: Tensor, latents: Tensor, sae_out: Tensor) -> Tensor:
        """Squared error summed over d_in, averaged over the batch."""
        return (sae_out - x).pow(2).sum(-1).mean()

    def aux_loss(self, x: Tensor, sae_out: Tensor, hidden_pre: Tensor, dead: DeadLatents | None) -> Tensor:
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


def build_sae(config: SaeConfig, *, apply_b_dec_to_input: bool = True, seed: int = 0) -> SparseAutoencoder:
    """A freshly initialised SAE of ``config.architecture`` (``config.d_in`` must be set)."""
    if not config.d_in:
        raise ConfigError("SaeConfig.d_in is 0; set it to the input width (the store's hidden size)")
    sae_class = ARCHITECTURES[config.architecture].load_class()
    return sae_class(config, apply_b_dec_to_input=apply_b_dec_to_input, seed=seed)
