"""Resampling for the bias tests: label-permutation nulls and bootstrap confidence intervals.

Both are written as matrix products so that thousands of resamples of thousands of features cost a
few BLAS calls: a permutation is a 0/1 row selecting the "male" samples, a bootstrap resample is a
row of multinomial counts, and group sums are ``rows @ data``. Ranks do not change when labels are
permuted, so the Mann-Whitney null reuses one ranking of the data.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

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
    """Percentile bootstrap interval per column."""

    low: np.ndarray
    high: np.ndarray


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


def centre(x: np.ndarray) -> Centred:
    """Centre a group's (n, K) values once, for many :func:`weighted_d` calls."""
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    c = (x64 - mean).astype(np.float32)
    return Centred(c, c * c, mean)


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
    moments = []
    for g, w in ((a, w_a), (b, w_b)):
        n = g.c.shape[0]
        w32 = w.astype(np.float32)
        m = (w32 @ g.c).astype(np.float64) / n
        v = np.maximum((w32 @ g.c2).astype(np.float64) - n * m**2, 0.0) / (n - 1)
        moments.append((m + g.mean, v, n))
    (ma, va, na), (mb, vb, nb) = moments
    return d_from_moments(ma, va, na, mb, vb, nb)


def bootstrap_d_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int, level: float, seed: int) -> BootstrapCI:
    """Percentile bootstrap CI of Cohen's d (pooled SD) for each column, resampling within groups.

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
        ds.append(
            weighted_d(ca, cb, resample_counts(rng, a.shape[0], rows), resample_counts(rng, b.shape[0], rows))
        )
    d = np.concatenate(ds, axis=0)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(d, [tail, 1.0 - tail], axis=0)
    return BootstrapCI(low, high)
