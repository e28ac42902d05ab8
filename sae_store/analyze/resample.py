"""Resampling: label-permutation nulls of the bias tests and the project's bootstrap intervals.

Both are written as matrix products so that thousands of resamples of thousands of features cost a
few BLAS calls: a permutation is a 0/1 row selecting the "male" samples, a bootstrap resample is a
row of multinomial counts, and group sums are ``rows @ data``. Ranks do not change when labels are
permuted, so the Mann-Whitney null reuses one ranking of the data.

Every bootstrap interval (the d of biased features here, the intervention effects in
:mod:`sae_store.intervene.stats`) is a BCa interval computed by :func:`bca_interval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
from scipy import special

from sae_store.analyze.stats import bh_count, d_from_moments, mwu_pvalue, rank_columns, welch_from_moments

Test = Literal["welch", "mannwhitney"]

#: Permutations or bootstrap resamples handled per matrix product (bounds memory to ~tens of MB).
ROWS_PER_STEP = 128


class PermutationNull(NamedTuple):
    """Discoveries under shuffled labels."""

    counts: np.ndarray
    """(n_permutations,) BH discoveries at ``alpha`` within this family, one per permutation."""
    small_p: list[np.ndarray] | None
    """Per permutation, the p-values <= alpha (enough to count discoveries under a correction
    pooled with other families, see :func:`~sae_store.analyze.stats.bh_count`); None unless asked."""


def permutation_masks(is_male: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """``n_permutations`` shuffles of the boolean label vector, as float64 rows (1 = male)."""
    rng = np.random.default_rng(seed)
    rows = np.tile(np.asarray(is_male, dtype=np.float64), (n_permutations, 1))
    return rng.permuted(rows, axis=1)


def _welch_p_from_sums(
    s1: np.ndarray, ss1: np.ndarray, s_tot: np.ndarray, ss_tot: np.ndarray, n1: int, n2: int
) -> np.ndarray:
    # group sums and sums of squares (of centred data) -> moments -> Welch p-values
    m1, m2 = s1 / n1, (s_tot - s1) / n2
    v1 = np.maximum(ss1 - n1 * m1**2, 0.0) / (n1 - 1)
    v2 = np.maximum(ss_tot - ss1 - n2 * m2**2, 0.0) / (n2 - 1)
    return welch_from_moments(m1, v1, n1, m2, v2, n2).p


def permutation_null(
    x_NF: np.ndarray,
    is_male: np.ndarray,
    *,
    n_permutations: int,
    test: Test,
    alpha: float,
    seed: int,
    keep_small_p: bool = False,
    feature_block: int = 4096,
) -> PermutationNull:
    """Count BH discoveries when the gender labels are shuffled.

    Parameters
    ----------
    x_NF : numpy.ndarray
        (samples, features) per-sample feature values of the included samples.
    is_male : numpy.ndarray
        (samples,) bool, True for male; its shuffles keep the group sizes.
    n_permutations, test, alpha, seed
        Number of shuffles, which test's p-values, the BH level and the seed (the same seed gives
        the same shuffles for every layer and language with the same samples).
    keep_small_p
        Also return each permutation's p-values <= alpha, for pooled (global) correction.
    feature_block
        Features processed per step (memory ~ samples x block x 8 bytes).
    """
    is_male = np.asarray(is_male, dtype=bool)
    n1, n2 = int(is_male.sum()), int((~is_male).sum())
    n_feat = x_NF.shape[1]
    masks = permutation_masks(is_male, n_permutations, seed)
    small: list[list[np.ndarray]] = [[] for _ in range(n_permutations)]
    for f0 in range(0, n_feat, feature_block):
        raw = np.asarray(x_NF[:, f0 : f0 + feature_block])
        if test == "mannwhitney":
            ranks = rank_columns(raw)
            data_NF = ranks.ranks_FN.T
        else:
            block = raw.astype(np.float64)
            data_NF = block - block.mean(axis=0)
            sq_NF = data_NF**2
            s_tot, ss_tot = data_NF.sum(axis=0), sq_NF.sum(axis=0)
        for r0 in range(0, n_permutations, ROWS_PER_STEP):
            rows = masks[r0 : r0 + ROWS_PER_STEP]
            if test == "mannwhitney":
                u1 = rows @ data_NF - n1 * (n1 + 1) / 2.0
                p = mwu_pvalue(u1, n1, n2, ranks.tie_term)
            else:
                p = _welch_p_from_sums(rows @ data_NF, rows @ sq_NF, s_tot, ss_tot, n1, n2)
            for i, row in enumerate(p):
                small[r0 + i].append(row[row <= alpha])
    pooled = [np.concatenate(parts) for parts in small]
    counts = np.array([bh_count(p, n_feat, alpha) for p in pooled], dtype=np.int64)
    return PermutationNull(counts, pooled if keep_small_p else None)


class BootstrapCI(NamedTuple):
    """A bootstrap confidence interval per column (BCa: see :func:`bca_interval`)."""

    low: np.ndarray
    high: np.ndarray
    excluded: np.ndarray
    """(K,) resamples left out of each column's bootstrap distribution (see :func:`bootstrap_d_ci`)."""


#: How every bootstrap interval of the project is computed, as written beside it in results.
CI_METHOD = "BCa bootstrap"


def _sorted_quantiles(sorted_RK: np.ndarray, count: np.ndarray, prob: np.ndarray) -> np.ndarray:
    # linear interpolation between order statistics (numpy's and scipy's default), per column, at its
    # own probability and over its own number of kept values (NaN sorts last)
    pos = prob * (count - 1)
    ok = np.isfinite(pos) & (count > 0)
    pos = np.where(ok, pos, 0.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    a = np.take_along_axis(sorted_RK, lo[None], axis=0)[0]
    b = np.take_along_axis(sorted_RK, hi[None], axis=0)[0]
    t = pos - lo
    with np.errstate(invalid="ignore"):
        value = np.where(t < 0.5, a + (b - a) * t, b - (b - a) * (1 - t))
    return np.where(ok, value, np.nan)


def acceleration(jackknife: Sequence[np.ndarray]) -> np.ndarray:
    """BCa acceleration from leave-one-out estimates, one (n_j, K) array per resampled group.

    Efron & Tibshirani (1993) eq. 14.15, summed over independently resampled groups as
    :func:`scipy.stats.bootstrap` does; NaN leave-one-out values are left out. 0 where the
    leave-one-out estimates do not vary.
    """
    num: np.ndarray | float = 0.0
    den: np.ndarray | float = 0.0
    for values in jackknife:
        v = np.asarray(values, dtype=np.float64)
        kept = np.isfinite(v)
        n = kept.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(kept, v, 0.0).sum(axis=0) / n
            u = np.where(kept, (n - 1) * (mean - v), 0.0)
            num = num + np.where(n > 0, (u**3).sum(axis=0) / n**3, 0.0)
            den = den + np.where(n > 0, (u**2).sum(axis=0) / n**2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = num / (6.0 * den**1.5)
    return np.where(np.asarray(den) > 0, a, 0.0)


def bca_interval(
    estimate: np.ndarray, replicates: np.ndarray, jackknife: Sequence[np.ndarray], level: float
) -> BootstrapCI:
    """Bias-corrected and accelerated (BCa) bootstrap interval of each column.

    The same interval as :func:`scipy.stats.bootstrap` with ``method="BCa"`` computes from the same
    bootstrap distribution (Efron & Tibshirani 1993, ch. 14): the bias correction ``z0`` is the
    normal quantile of the fraction of replicates below the estimate (ties count half), the
    acceleration comes from the leave-one-out estimates, and the interval is the pair of replicate
    quantiles at ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z = -+Phi^-1((1 + level) / 2)``.
    Whenever the estimate lies inside the central ``level`` part of its replicates (``|z0| < z``), those
    two levels lie on either side of the estimate's own level ``Phi(z0)``, so the interval contains the
    estimate (up to the spacing of the replicates); an estimate outside that part means a bootstrap
    distribution too biased for any interval drawn from it.

    Parameters
    ----------
    estimate : numpy.ndarray
        (K,) the statistic on the data.
    replicates : numpy.ndarray
        (R, K) the statistic on R resamples; NaN marks a resample left out of a column.
    jackknife : sequence of numpy.ndarray
        One (n_j, K) array per independently resampled group: the statistic with each of its n_j
        observations left out.
    level : float
        Confidence level, e.g. 0.95.

    Returns
    -------
    BootstrapCI
        NaN bounds where the interval is undefined: fewer than two replicates kept, the estimate
        outside the replicates' range (``z0`` infinite), or ``1 - a (z0 + z) <= 0``.
    """
    est = np.asarray(estimate, dtype=np.float64)
    rep = np.asarray(replicates, dtype=np.float64)
    kept = np.isfinite(rep)
    count = kept.sum(axis=0)
    below = ((rep < est) & kept).sum(axis=0) + ((rep <= est) & kept).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z0 = special.ndtri(below / (2.0 * count))
    a = acceleration(jackknife)
    z = special.ndtri((1.0 - level) / 2.0)
    sorted_RK = np.sort(np.where(kept, rep, np.nan), axis=0)
    bounds = []
    for zz in (z, -z):
        shift = z0 + zz
        denom = 1.0 - a * shift
        with np.errstate(invalid="ignore", divide="ignore"):
            prob = special.ndtr(z0 + shift / denom)
        prob = np.where(np.isfinite(z0) & (denom > 0) & (count >= 2), prob, np.nan)
        bounds.append(_sorted_quantiles(sorted_RK, count, prob))
    return BootstrapCI(bounds[0], bounds[1], (rep.shape[0] - count).astype(np.int64))


def resample_counts(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """``rows`` bootstrap resamples of ``n`` items as multinomial counts (rows, n), float64."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=rows).astype(np.float64)


class Centred(NamedTuple):
    """One group's values centred on their column means, ready for resampled moments."""

    c: np.ndarray
    """(n, K) float32 deviations from the mean (float32 halves the cost of the products)."""
    c2: np.ndarray
    """(n, K) float32 squared deviations."""
    mean: np.ndarray
    """(K,) float64 column means."""
    var: np.ndarray
    """(K,) float64 column variances (ddof=1)."""


def centre(x: np.ndarray) -> Centred:
    """Centre a group's (n, K) values once, for many :func:`weighted_moments` calls."""
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    d = x64 - mean
    c = d.astype(np.float32)
    return Centred(c, c * c, mean, (d * d).sum(axis=0) / (x64.shape[0] - 1))


class Moments(NamedTuple):
    """Means and variances (ddof=1) of one group in each of several resamples."""

    mean: np.ndarray
    """(R, K)"""
    var: np.ndarray
    """(R, K)"""
    n: int
    """Observations per resample."""


def weighted_moments(g: Centred, w: np.ndarray) -> Moments:
    """A group's moments in each resample given as (R, n) rows of counts (rows sum to n)."""
    n = g.c.shape[0]
    w32 = w.astype(np.float32)
    m = (w32 @ g.c).astype(np.float64) / n
    v = np.maximum((w32 @ g.c2).astype(np.float64) - n * m**2, 0.0) / (n - 1)
    return Moments(m + g.mean, v, n)


def _leave_one_out(g: Centred) -> Moments:
    """A group's moments with each of its n observations left out in turn: (n, K), n - 1 each."""
    c = g.c.astype(np.float64)
    n = c.shape[0]
    ss = (n - 1) * g.var
    var = np.maximum(ss - c * c * n / (n - 1), 0.0) / max(n - 2, 1)
    return Moments(g.mean - c / (n - 1), var, n - 1)


def moments_d(a: Moments | Centred, b: Moments | Centred) -> np.ndarray:
    """Cohen's d (pooled SD, :func:`~sae_store.analyze.stats.d_from_moments`) of two groups' moments."""
    na = a.n if isinstance(a, Moments) else a.c.shape[0]
    nb = b.n if isinstance(b, Moments) else b.c.shape[0]
    return d_from_moments(a.mean, a.var, na, b.mean, b.var, nb)


def weighted_d(a: Centred, b: Centred, w_a: np.ndarray, w_b: np.ndarray) -> np.ndarray:
    """Cohen's d (pooled SD) of every column for each resample given as rows of counts.

    Parameters
    ----------
    a, b : Centred
        The two groups (:func:`centre` of (n_a, K) and (n_b, K) values).
    w_a, w_b : numpy.ndarray
        (R, n_a) and (R, n_b) counts of each sample in each of R resamples (rows sum to n).

    Returns
    -------
    numpy.ndarray
        (R, K) d values; 0 where a resample has zero pooled SD and no difference.
    """
    return moments_d(weighted_moments(a, w_a), weighted_moments(b, w_b))


#: A resampled group whose variance is below this fraction of its variance in the data counts as
#: having none: float32 products leave ~1e-6 of rounding where every drawn value is the same.
NEAR_ZERO_VARIANCE = 1e-3


def _collapsed(m: Moments, g: Centred) -> np.ndarray:
    """(R, K) True where a group that varies in the data has (near-)zero variance in a resample."""
    return (g.var > 0) & (m.var <= NEAR_ZERO_VARIANCE * g.var)


def bootstrap_d_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int, level: float, seed: int) -> BootstrapCI:
    """BCa bootstrap CI of Cohen's d (pooled SD) for each column, resampling within groups.

    A resample in which a group whose values vary in the data draws only one value (its variance
    vanishes: e.g. none of the two men where a feature is active) is left out of that column's
    bootstrap distribution and counted in ``excluded``. The d of such a resample divides by the other
    group's spread alone, and where that group is tight too it runs away (a d of -3.2 gave resamples
    below -11 in the demo, and a percentile interval down to -12); the interval is therefore
    conditional on both groups keeping some spread, as they have in the data. The jackknife for the
    acceleration leaves such leave-one-out samples out in the same way.

    Parameters
    ----------
    a, b : numpy.ndarray
        (n_a, K) and (n_b, K): the groups' values of the K features to report (male, female).
    n_boot : int
        Bootstrap resamples.
    level : float
        Confidence level, e.g. 0.95.
    seed : int
        Seed of the resampling.
    """
    rng = np.random.default_rng(seed)
    ca, cb = centre(a), centre(b)
    ds = []
    for r0 in range(0, n_boot, ROWS_PER_STEP):
        rows = min(ROWS_PER_STEP, n_boot - r0)
        ma = weighted_moments(ca, resample_counts(rng, a.shape[0], rows))
        mb = weighted_moments(cb, resample_counts(rng, b.shape[0], rows))
        ds.append(np.where(_collapsed(ma, ca) | _collapsed(mb, cb), np.nan, moments_d(ma, mb)))
    loo_a, loo_b = _leave_one_out(ca), _leave_one_out(cb)
    jackknife = [
        np.where(_collapsed(loo_a, ca), np.nan, moments_d(loo_a, cb)),
        np.where(_collapsed(loo_b, cb), np.nan, moments_d(ca, loo_b)),
    ]
    return bca_interval(moments_d(ca, cb), np.concatenate(ds, axis=0), jackknife, level)
