"""Reconstruction and sparsity of several SAEs of one layer on the stored tokens, read once.

Per SAE and (language, token role) the additive totals of :mod:`sae_store.train.metrics`; the role
``all`` is image and text tokens together (special tokens such as BOS are left out of it, as SAEBench
leaves out BOS, EOS and padding), and every language together is the sum of the languages' totals.
The legacy explained variance uses each split's mean over the batch (16 samples of one language).
Alongside, for the probes: each sample's mean latent vector (per SAE) and mean stored vector over
its image tokens and over its text tokens, per language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from sae_store.evaluate.tokens import CELL_ROLES, StoredTokens
from sae_store.progress import progress_bar
from sae_store.train.metrics import ActiveLatents, ReconstructionTotals, legacy_sum, token_totals
from sae_store.train.sae import SparseAutoencoder

#: The token-role splits reported: the roles read, then ``all`` (image and text).
SPLIT_ROLES = (*(r.name.lower() for r in CELL_ROLES), "all")
#: Roles whose tokens a sample's pooled vectors average (the probes' inputs).
POOLED_ROLES = ("image", "text")


@dataclass
class SaeTotals:
    """One SAE's measurements on the stored tokens."""

    totals: dict[tuple[int, str], ReconstructionTotals] = field(default_factory=dict)
    """By (language position, split role)."""
    pooled: Tensor | None = None
    """[samples, languages, pooled roles, d_sae] sums of the latents (float32)."""

    def split(self, language: int | None, role: str) -> ReconstructionTotals | None:
        """Totals of one language (None: every language) and split role; None if nothing was measured."""
        parts = [t for (g, r), t in self.totals.items() if r == role and language in (None, g)]
        return sum(parts[1:], parts[0]) if parts else None


@dataclass
class StoredPass:
    """What one pass over a layer's stored tokens measured."""

    saes: dict[str, SaeTotals]
    pooled_x: Tensor
    """[samples, languages, pooled roles, d_in] sums of the stored vectors (float64)."""
    pooled_tokens: Tensor
    """[samples, languages, pooled roles] how many vectors each sum holds."""
    nonfinite: int

    def pooled_means(self, name: str | None = None) -> np.ndarray:
        """Per-sample mean latents of SAE ``name`` (None: mean stored vectors); NaN where a sample has
        no token of a role."""
        sums = self.pooled_x if name is None else self.saes[name].pooled
        assert sums is not None
        n = self.pooled_tokens[..., None].double()
        return torch.where(n > 0, sums / n.clamp_min(1), torch.nan).numpy()


#: Below this share of non-zero latents, the reconstruction sums only the decoder rows of non-zero
#: latents (:meth:`~sae_store.train.metrics.ActiveLatents.decode`); above it, the dense product is faster.
SPARSE_DECODE = 0.05


@torch.no_grad()
def measure_stored(
    tokens: StoredTokens,
    saes: Mapping[str, SparseAutoencoder],
    *,
    batch_tokens: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> StoredPass:
    """Measure every SAE of ``saes`` (by set name) on the stored ``tokens``, reading them once."""
    n_rows, n_lang = len(tokens.samples), len(tokens.store.layout.languages)
    n_pool = len(POOLED_ROLES)
    d_in = tokens.store.layout.hidden_size
    out = {name: SaeTotals() for name in saes}
    pooled_x = torch.zeros(n_rows * n_lang * n_pool, d_in, dtype=torch.float64, device=device)
    counts = torch.zeros(n_rows * n_lang * n_pool, dtype=torch.int64, device=device)
    shift: Tensor | None = None
    batches = progress_bar(
        tokens.batches(), desc=f"layer {tokens.layer} stored", unit="batch", enabled=progress
    )
    for batch in batches:
        x = torch.from_numpy(batch.x).to(device)
        cell = torch.from_numpy(batch.cell).to(device)
        if shift is None:
            shift = x.double().mean(0).cpu() if len(x) else torch.zeros(d_in, dtype=torch.float64)
        pooled = cell < n_pool  # image and text tokens
        # each pooled token's row of the pooled sums (sample, language, role); unused for special tokens
        slot = (torch.from_numpy(batch.row).to(device) * n_lang + batch.language) * n_pool + cell
        pooled_x.index_add_(0, slot[pooled], x[pooled].double())
        counts.index_add_(0, slot[pooled], torch.ones_like(slot[pooled]))
        x64 = x.double()
        for name, sae in saes.items():
            rec = out[name]
            if rec.pooled is None:
                rec.pooled = torch.zeros(n_rows * n_lang * n_pool, sae.d_sae, device=device)
            parts, errs = [], []
            for i in range(0, len(x), batch_tokens):
                part = slice(i, i + batch_tokens)
                latents = sae.encode(x[part].to(sae.W_enc.dtype))
                active = ActiveLatents.of(latents)
                sparse = len(active.rows) <= SPARSE_DECODE * latents.numel()
                x_hat = active.decode(sae.W_dec, sae.b_dec) if sparse else sae.decode(latents)
                measured = token_totals(x[part], active, x_hat, cell[part], 3, shift)
                parts.append(measured.groups)
                errs.append(measured.err)
                keep = pooled[part][active.rows]  # the non-zero latents of image and text tokens
                where = (slot[part][active.rows[keep]], active.cols[keep])
                rec.pooled.index_put_(where, active.values[keep].float(), accumulate=True)
            if not parts:
                continue
            err = torch.cat(errs)
            for j, role in enumerate(SPLIT_ROLES):
                mask = pooled if role == "all" else cell == j
                cells = [p[k] for p in parts for k in ((0, 1) if role == "all" else (j,))]
                total = sum(cells[1:], cells[0])
                total.legacy_sum, total.legacy_tokens = legacy_sum(x64, err, mask)
                key = (batch.language, role)
                rec.totals[key] = total if key not in rec.totals else rec.totals[key] + total
    for rec in out.values():
        if rec.pooled is not None:
            rec.pooled = rec.pooled.reshape(n_rows, n_lang, n_pool, -1).cpu()
    return StoredPass(
        out,
        pooled_x.reshape(n_rows, n_lang, n_pool, d_in).cpu(),
        counts.reshape(n_rows, n_lang, n_pool).cpu(),
        tokens.nonfinite,
    )
