"""Reconstruction and sparsity of an SAE: the one place for the formulas of FVU, L0, dead latents and
density, shared by training's held-out metrics, ``encode`` (pretrained SAEs) and ``evaluate``.

Every metric follows from additive sums over tokens (:class:`ReconstructionTotals`), so totals of
batches, token roles or languages add up, and a metric of a union of splits is computed from the
sum of their totals rather than averaged. Names and formulas follow SAELens / SAEBench's core eval:

- ``explained_variance`` = 1 - sum of squared errors / sum of squared deviations from the per-dimension
  mean of the tokens measured (the conventional formula; SAELens since its PR #665), ``fvu`` = 1 - it;
- ``explained_variance_legacy``: SAEBench's older value, the per-token
  1 - ||x - x_hat||^2 / ||x - batch mean||^2 averaged over tokens (the batch mean taken over the tokens
  of the same split in one evaluation batch; what the SAEBench paper reports). It differs from the
  conventional value whenever the data are not centred per token;
- ``mse`` = mean over tokens of ||x - x_hat||^2 (summed over d_in; SAEBench further divides by its batch's
  token count), ``cossim`` = mean cosine of x and x_hat (0 where either is the zero vector),
  ``l2_norm_in``/``l2_norm_out`` mean norms, ``l2_ratio`` = mean ||x_hat|| / ||x|| (||x|| < 1e-4 counts
  as 1), ``relative_reconstruction_bias`` = E||x_hat||^2 / E[x . x_hat];
- ``l0`` = mean number of latents > 0 per token, ``l1`` = mean sum of latents per token;
- ``dead_fraction`` = latents that never fire on the ``dead_fraction_tokens`` tokens measured
  (``frac_alive`` = 1 - it),
  ``freq_over_1_percent``/``freq_over_10_percent`` = fraction of latents firing on more than 1 % / 10 %
  of them (dense latents), ``mean_log10_density`` = mean of log10(firing frequency), floored at 1e-10.

The trainer's other dead-latent metric, ``dead_fraction_train_window`` (latents silent during the last
``dead_window_tokens`` training tokens), is a different number;
:data:`~sae_store.train.discovery.DEAD_METRICS` names both the same way everywhere they are shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from sae_store.train.sae import SparseAutoencoder

#: Density below this counts as zero in log10 averages (SAELens uses the same floor).
DENSITY_FLOOR = 1e-10
#: A latent firing on more than this fraction of tokens is dense (SAEBench's ``freq_over_10_percent``).
DENSE_FRACTION = 0.1
#: ||x|| below this counts as 1 in ``l2_ratio`` (as SAEBench does).
_SMALL_NORM = 1e-4


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


#: The per-token quantities whose sums :class:`ReconstructionTotals` keeps, in this order.
_TOKEN_SUMS = ("sse", "cossim", "l2_norm_in", "l2_norm_out", "l2_ratio", "out_sq", "in_dot_out", "l0", "l1")


@dataclass
class ReconstructionTotals:
    """Sums over a set of tokens from which every reconstruction and sparsity metric follows.

    Totals of disjoint token sets add (``a + b``) when they share ``shift``; the legacy explained
    variance is summed per token too, with the batch means of the set it was measured on.
    """

    d_in: int
    d_sae: int
    shift: Tensor
    """[d_in] float64 subtracted before summing x and x^2 (keeps the variance exact for large means)."""
    tokens: int = 0
    sums: Tensor = field(default_factory=lambda: torch.zeros(len(_TOKEN_SUMS), dtype=torch.float64))
    """Sums of :data:`_TOKEN_SUMS` over the tokens."""
    x_sum: Tensor | None = None
    """[d_in] sum of (x - shift), float64."""
    x_sq_sum: Tensor | None = None
    """[d_in] sum of (x - shift)^2, float64."""
    fired: Tensor | None = None
    """[d_sae] tokens on which each latent was > 0 (int64)."""
    legacy_sum: float = 0.0
    legacy_tokens: int = 0

    def __post_init__(self) -> None:
        self.shift = self.shift.double().cpu()
        if self.x_sum is None:
            self.x_sum = torch.zeros(self.d_in, dtype=torch.float64)
        if self.x_sq_sum is None:
            self.x_sq_sum = torch.zeros(self.d_in, dtype=torch.float64)
        if self.fired is None:
            self.fired = torch.zeros(self.d_sae, dtype=torch.int64)

    def __add__(self, other: ReconstructionTotals) -> ReconstructionTotals:
        if not torch.equal(self.shift, other.shift):
            raise ValueError("totals measured with different shifts cannot be added")
        assert self.x_sum is not None and self.x_sq_sum is not None and self.fired is not None
        assert other.x_sum is not None and other.x_sq_sum is not None and other.fired is not None
        return ReconstructionTotals(
            self.d_in,
            self.d_sae,
            self.shift,
            self.tokens + other.tokens,
            self.sums + other.sums,
            self.x_sum + other.x_sum,
            self.x_sq_sum + other.x_sq_sum,
            self.fired + other.fired,
            self.legacy_sum + other.legacy_sum,
            self.legacy_tokens + other.legacy_tokens,
        )

    @property
    def mean(self) -> Tensor:
        """Per-dimension mean of the tokens [d_in] (float64; the shift where there are none)."""
        assert self.x_sum is not None
        return self.shift + self.x_sum / max(self.tokens, 1)

    def metrics(self) -> dict[str, float]:
        """Every metric of the module docstring by its SAEBench name (only ``tokens`` when empty)."""
        n = self.tokens
        if n == 0:
            return {"tokens": 0}
        assert self.x_sum is not None and self.x_sq_sum is not None and self.fired is not None
        s = dict(zip(_TOKEN_SUMS, self.sums.tolist(), strict=True))
        total = float((self.x_sq_sum - self.x_sum.pow(2) / n).sum())
        fvu = s["sse"] / total if total > 0 else math.nan
        density = self.fired.double() / n
        return {
            "tokens": n,
            "explained_variance": 1.0 - fvu,
            "explained_variance_legacy": (
                self.legacy_sum / self.legacy_tokens if self.legacy_tokens else math.nan
            ),
            "fvu": fvu,
            "mse": s["sse"] / n,
            "cossim": s["cossim"] / n,
            "l2_norm_in": s["l2_norm_in"] / n,
            "l2_norm_out": s["l2_norm_out"] / n,
            "l2_ratio": s["l2_ratio"] / n,
            "relative_reconstruction_bias": s["out_sq"] / s["in_dot_out"] if s["in_dot_out"] else math.nan,
            "l0": s["l0"] / n,
            "l1": s["l1"] / n,
            "dead_fraction": float((self.fired == 0).double().mean()),
            "frac_alive": float((self.fired > 0).double().mean()),
            "freq_over_1_percent": float((density > 0.01).double().mean()),
            "freq_over_10_percent": float((density > DENSE_FRACTION).double().mean()),
            "mean_log10_density": float(log10_density(self.fired, n).mean()),
        }


class ActiveLatents(NamedTuple):
    """The non-zero latents of a batch as (token, latent, value) triples, token-major: what sparse
    SAEs make cheap to count and to decode (k 64 of 16,384 latents: 0.4 % of a dense batch)."""

    rows: Tensor
    cols: Tensor
    values: Tensor
    n_tokens: int
    d_sae: int

    @classmethod
    def of(cls, latents: Tensor) -> ActiveLatents:
        """The latents > 0 of ``latents`` [n, d_sae]."""
        rows, cols = (latents > 0).nonzero(as_tuple=True)
        return cls(rows, cols, latents[rows, cols], int(latents.shape[0]), int(latents.shape[1]))

    def decode(self, W_dec: Tensor, b_dec: Tensor) -> Tensor:
        """``latents @ W_dec + b_dec`` [n, d_in] from the non-zero latents only."""
        offsets = torch.zeros(self.n_tokens, dtype=torch.long, device=self.rows.device)
        offsets[1:] = torch.bincount(self.rows, minlength=self.n_tokens).cumsum(0)[:-1]
        weights = self.values.to(W_dec.dtype)
        summed = torch.nn.functional.embedding_bag(
            self.cols, W_dec, offsets, mode="sum", per_sample_weights=weights
        )
        return summed + b_dec


class BatchTotals(NamedTuple):
    """What :func:`token_totals` measured on a batch."""

    groups: list[ReconstructionTotals]
    """Totals of each group (without the legacy explained variance: see :func:`legacy_sum`)."""
    err: Tensor
    """[n] squared reconstruction error of each token (float64)."""


def token_totals(
    x: Tensor, active: ActiveLatents, x_hat: Tensor, groups: Tensor, n_groups: int, shift: Tensor
) -> BatchTotals:
    """Totals of each group of a batch: ``x``, ``x_hat`` [n, d_in] and the ``active`` latents on one
    device, ``groups`` [n] (int64, in ``0..n_groups-1``) the group of each token."""
    x64, out64 = x.double(), x_hat.double()
    err = (x64 - out64).pow(2).sum(-1)
    norm_in, norm_out = x64.norm(dim=-1), out64.norm(dim=-1)
    dot = (x64 * out64).sum(-1)
    both = (norm_in > 0) & (norm_out > 0)
    cos = torch.where(both, dot / (norm_in * norm_out).clamp_min(1e-300), torch.zeros_like(dot))
    ratio = norm_out / torch.where(norm_in.abs() < _SMALL_NORM, torch.ones_like(norm_in), norm_in)
    rows, cols, n, d_sae = active.rows, active.cols, len(x), active.d_sae
    l0 = torch.bincount(rows, minlength=n).double()
    l1 = torch.bincount(rows, weights=active.values.double(), minlength=n)
    fired = torch.bincount(groups[rows] * d_sae + cols, minlength=n_groups * d_sae).view(n_groups, d_sae)
    per_token = torch.stack([err, cos, norm_in, norm_out, ratio, norm_out.pow(2), dot, l0, l1], dim=1)
    one_hot = torch.zeros(n_groups, n, dtype=torch.float64, device=x.device)
    one_hot[groups, torch.arange(n, device=x.device)] = 1.0
    centred = x64 - shift.to(x.device)
    sums, x_sum, x_sq = one_hot @ per_token, one_hot @ centred, one_hot @ centred.pow(2)
    out = []
    for g in range(n_groups):
        mask = groups == g
        totals = ReconstructionTotals(
            x.shape[1],
            d_sae,
            shift,
            int(mask.sum()),
            sums[g].cpu(),
            x_sum[g].cpu(),
            x_sq[g].cpu(),
            fired[g].cpu(),
        )
        out.append(totals)
    return BatchTotals(out, err)


def legacy_sum(x: Tensor, err: Tensor, mask: Tensor) -> tuple[float, int]:
    """Sum over the tokens ``mask`` selects of SAEBench's legacy per-token explained variance,
    1 - ``err`` / ||x - mean of the selected tokens||^2, and how many tokens it covers (those whose
    deviation from the mean is not zero)."""
    if not bool(mask.any()):
        return 0.0, 0
    xs = x[mask].double()
    deviation = (xs - xs.mean(0)).pow(2).sum(-1)
    keep = deviation > 0
    return float((1 - err[mask][keep] / deviation[keep]).sum()), int(keep.sum())


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
    totals: ReconstructionTotals | None = None
    try:
        for batch in batches:
            x = batch.to(device)
            latents = sae.encode(x)
            shift = totals.shift if totals is not None else x.double().mean(0)
            groups = x.new_zeros(len(x), dtype=torch.long)
            part = token_totals(x, ActiveLatents.of(latents), sae.decode(latents), groups, 1, shift).groups[0]
            totals = part if totals is None else totals + part
    finally:
        sae.train(was_training)
    if totals is None or totals.tokens == 0:
        return EvalResult({"tokens": 0}, torch.full((sae.d_sae,), math.log10(DENSITY_FLOOR)))
    assert totals.fired is not None
    m = totals.metrics()
    keys = ("tokens", "mse", "fvu", "explained_variance", "l0", "dead_fraction", "mean_log10_density")
    metrics: dict[str, Any] = {k: m[k] for k in keys}
    metrics["dead_fraction_tokens"] = totals.tokens
    return EvalResult(metrics, log10_density(totals.fired, totals.tokens).float())
