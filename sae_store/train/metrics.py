"""Held-out quality of an SAE: the one place for the formulas of FVU, L0, dead fraction and density.

Used by the trainer at the end of training (on the layer's held-out samples) and by ``sae-store
encode`` for SAEs that come without these metrics (pretrained SAEs), so every row of the report's
quality table is computed the same way. Names and formulas follow SAELens / SAEBench:

- ``fvu`` = sum of squared reconstruction errors / sum of squared deviations from the held-out mean
  (``explained_variance`` = 1 - fvu);
- ``l0`` = mean number of active latents (> 0) per token;
- ``dead_fraction`` = latents that never fire on the ``dead_fraction_tokens`` held-out tokens;
- ``mean_log10_density`` = mean over latents of log10(firing frequency), floored at 1e-10.

The trainer's other dead-latent metric, ``dead_fraction_train_window`` (latents silent during the last
``dead_window_tokens`` training tokens), is a different number;
:data:`~sae_store.train.discovery.DEAD_METRICS` names both the same way everywhere they are shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from sae_store.train.sae import SparseAutoencoder

#: Density below this counts as zero in log10 averages (SAELens uses the same floor).
DENSITY_FLOOR = 1e-10


class EvalResult(NamedTuple):
    """Held-out metrics and the per-latent firing density behind them."""

    metrics: dict[str, float]
    log10_density: Tensor
    """log10 of each latent's firing frequency [d_sae] (floored at 1e-10)."""


def log10_density(counts: Tensor, tokens: int) -> Tensor:
    """Per latent, log10(fraction of ``tokens`` where it fired), floored at ``DENSITY_FLOOR`` (float64)."""
    return torch.log10(counts.double() / max(tokens, 1) + DENSITY_FLOOR)


def mean_log10_density(counts: Tensor, tokens: int) -> float:
    """Mean over latents of log10(fraction of tokens where the latent fired)."""
    return float(log10_density(counts, tokens).mean())


@torch.no_grad()
def held_out_metrics(
    sae: SparseAutoencoder, batches: Iterable[Tensor], device: torch.device | str = "cpu"
) -> EvalResult:
    """Metrics of ``sae`` in inference mode on ``batches`` (variance about their own mean).

    Parameters
    ----------
    sae
        The SAE, on ``device``; it is put back in its previous (train/eval) mode afterwards.
    batches
        Held-out token vectors [tokens, d_in], in the units the SAE expects.
    device
        Where the batches are moved before encoding.

    Returns
    -------
    EvalResult
        ``metrics`` has ``tokens``, ``mse``, ``fvu``, ``explained_variance``, ``l0``,
        ``dead_fraction``, ``dead_fraction_tokens`` and ``mean_log10_density`` (only ``tokens`` = 0
        when ``batches`` is empty).
    """
    was_training = sae.training
    sae.eval()
    d_sae, d_in = sae.d_sae, sae.d_in
    n, sse, l0 = 0, 0.0, 0.0
    s1 = torch.zeros(d_in, dtype=torch.float64, device=device)
    s2 = torch.zeros(d_in, dtype=torch.float64, device=device)
    fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    try:
        for batch in batches:
            x = batch.to(device)
            latents = sae.encode(x)
            sse += float((sae.decode(latents) - x).double().pow(2).sum())
            s1 += x.double().sum(0)
            s2 += x.double().pow(2).sum(0)
            active = latents > 0
            fired += active.sum(0)
            l0 += float(active.sum())
            n += len(x)
    finally:
        sae.train(was_training)
    if n == 0:
        return EvalResult({"tokens": 0}, torch.full((d_sae,), math.log10(DENSITY_FLOOR)))
    total = float((s2 - s1.pow(2) / n).sum())
    fvu = sse / max(total, 1e-12)
    density = log10_density(fired, n).float().cpu()
    metrics = {
        "tokens": n,
        "mse": sse / n,
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "l0": l0 / n,
        "dead_fraction": float((fired == 0).double().mean()),
        "dead_fraction_tokens": n,
        "mean_log10_density": float(density.double().mean()),
    }
    return EvalResult(metrics, density)
