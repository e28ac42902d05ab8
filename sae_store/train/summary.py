"""Per-sample statistics of an SAE's latents over a block of samples' tokens, in one pass: what
``encode`` writes into the ``features`` group (mean, max, fraction active, tokens used; the fraction
active and the tokens also per token role).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from sae_store.train.sae import SparseAutoencoder


class TokenSummary(NamedTuple):
    """One language's statistics of a block of samples (the order ``encode`` writes them in)."""

    mean: np.ndarray
    """[samples, d_sae] latent mean over the sample's tokens of the chosen roles."""
    max: np.ndarray
    """[samples, d_sae] its max."""
    frac: np.ndarray
    """[samples, d_sae] fraction of those tokens where the latent is > 0."""
    used: np.ndarray
    """[samples] tokens summarised (int32)."""
    role_frac: np.ndarray
    """[samples, roles, d_sae] fraction of each role's tokens where the latent is > 0."""
    role_tokens: np.ndarray
    """[samples, roles] tokens of each role summarised (int32)."""


@torch.no_grad()
def summarize_tokens(
    sae: SparseAutoencoder,
    acts: np.ndarray,
    token_roles: np.ndarray,
    codes: list[int],
    *,
    batch_tokens: int,
    device: str = "cpu",
) -> TokenSummary:
    """Per-sample statistics of the latents over the tokens whose role is one of ``codes``, in one pass.

    ``acts`` [samples, tokens, d_in]; ``token_roles`` [samples, tokens] the stored role codes; ``codes``
    the roles kept, in the order of the result's role axis. Non-finite vectors are left out; a sample
    (or a role of it) with no token left gets NaN statistics and 0 tokens.
    """
    n_samples, R, F = acts.shape[0], len(codes), sae.d_sae
    position = np.full(256, -1, np.int64)  # role code -> its place on the role axis
    position[codes] = np.arange(R)
    role_of = position[token_roles.astype(np.uint8)]
    use = (role_of >= 0) & np.isfinite(acts).all(axis=-1)
    rows, cols = np.nonzero(use)
    x_all = acts[use]
    sums = torch.zeros(n_samples, F, dtype=torch.float64, device=device)
    # active tokens per (sample, role): whole numbers, exact in float32 up to 2**24 tokens
    active = torch.zeros(n_samples * R, F, dtype=torch.float32, device=device)
    maxs = torch.zeros(n_samples, F, dtype=torch.float32, device=device)
    seg_all = torch.from_numpy(rows).to(device)
    role_seg_all = torch.from_numpy(rows * R + role_of[rows, cols]).to(device)
    for i in range(0, len(x_all), batch_tokens):
        x = torch.from_numpy(x_all[i : i + batch_tokens]).to(device)
        seg = seg_all[i : i + batch_tokens]
        latents = sae.encode(x)  # >= 0 for every architecture, so max starts from 0
        sums.index_add_(0, seg, latents.double())
        active.index_add_(0, role_seg_all[i : i + batch_tokens], (latents > 0).float())
        maxs.scatter_reduce_(0, seg[:, None].expand_as(latents), latents, reduce="amax")
    role_counts = np.bincount(rows * R + role_of[rows, cols], minlength=n_samples * R).reshape(n_samples, R)
    per_role = active.view(n_samples, R, F).double()
    counts = torch.from_numpy(role_counts.sum(axis=1)).to(device)
    n = counts[:, None].double()
    empty = (counts == 0)[:, None]
    nan = torch.tensor(float("nan"), device=device)
    mean = torch.where(empty, nan, sums / n.clamp_min(1)).float()
    frac = torch.where(empty, nan, per_role.sum(dim=1) / n.clamp_min(1)).float()
    maxs = torch.where(empty, nan, maxs)
    n_role = torch.from_numpy(role_counts).to(device)[..., None].double()
    role_frac = torch.where(n_role == 0, nan, per_role / n_role.clamp_min(1)).float()
    return TokenSummary(
        mean.cpu().numpy(),
        maxs.cpu().numpy(),
        frac.cpu().numpy(),
        counts.cpu().numpy().astype(np.int32),
        role_frac.cpu().numpy(),
        role_counts.astype(np.int32),
    )
