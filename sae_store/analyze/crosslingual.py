"""English vs Arabic: do the same features carry the gender difference in both languages?

Pure numpy on paired matrices ``x_a`` and ``x_b`` (samples x features) holding the same images'
feature values under the two prompts. Feature indices must mean the same thing in both (one shared
SAE, or a second SAE re-indexed by :func:`~sae_store.analyze.matching.match_features`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from sae_store.analyze.stats import cohens_d, rank_columns


@dataclass(frozen=True)
class Overlap:
    """Overlap of two top-k feature sets against two independent random k-sets out of n."""

    k: int
    n: int
    count: int
    jaccard: float
    expected: float
    """k^2 / n, the mean overlap of independent random sets."""
    p_value: float
    """Permutation p: fraction of random relabellings with an overlap >= count (+1 correction)."""
    p_exact: float
    """The same tail probability from the hypergeometric distribution."""


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite scores (ties broken by index)."""
    score = np.where(np.isfinite(score), score, -np.inf)
    return np.argsort(-score, kind="stable")[:k]


def topk_overlap(
    score_a: np.ndarray, score_b: np.ndarray, k: int, *, permutations: int, seed: int
) -> Overlap:
    """Overlap (count, Jaccard) of the top-``k`` features by ``score_a`` and by ``score_b``.

    Relabelling the feature indices of one language at random makes the overlap hypergeometric
    (k draws from n with k successes), so the permutation null is sampled from that distribution
    directly; ``p_exact`` is its exact tail.
    """
    n = score_a.size
    k = min(k, n)
    count = int(np.intersect1d(top_k(score_a, k), top_k(score_b, k)).size)
    null = (
        np.random.default_rng(seed).hypergeometric(k, n - k, k, size=permutations) if permutations else None
    )
    p_perm = float((1 + (null >= count).sum()) / (1 + permutations)) if null is not None else float("nan")
    return Overlap(
        k=k,
        n=n,
        count=count,
        jaccard=count / (2 * k - count),
        expected=k * k / n,
        p_value=p_perm,
        p_exact=float(stats.hypergeom.sf(count - 1, n, k, k)),
    )


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (average ranks for ties)."""
    ra = rank_columns(np.atleast_2d(a).T).ranks_FN
    rb = rank_columns(np.atleast_2d(b).T).ranks_FN
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1)))


#: How the interval of :class:`Correlation` is computed, as written beside it in results.
RHO_CI_METHOD = "Fisher z, Bonett-Wright variance"


class Correlation(NamedTuple):
    """Spearman correlation of the two languages' effect sizes over features, with its CI."""

    rho: float
    """Spearman correlation of the observed effect sizes of the features used."""
    low: float
    high: float
    """:func:`spearman_interval` of ``rho`` (NaN with fewer than 4 features)."""
    n_features: int
    """Features used: those that vary in both languages (never-active features are left out)."""


def fisher_interval(
    r: float | np.ndarray, var_z: float | np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Interval ``tanh(atanh(r) -+ z sqrt(var_z))`` of a correlation, ``var_z`` the variance of atanh(r)."""
    half = special.ndtri(0.5 + level / 2.0) * np.sqrt(var_z)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.arctanh(np.clip(r, -1.0, 1.0))
        return np.tanh(z - half), np.tanh(z + half)


def spearman_interval(
    rho: float | np.ndarray, n: int | np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval of a Spearman correlation of ``n`` pairs: Fisher z with the Bonett-Wright variance.

    Bonett & Wright (2000, Psychometrika 65:23) give var(atanh(rho)) ~ (1 + rho^2 / 2) / (n - 3) for
    Spearman's rho; the interval is symmetric about atanh(rho), so it always contains ``rho``. NaN for
    n < 4.
    """
    n = np.asarray(n, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_z = np.where(n > 3, (1.0 + rho**2 / 2.0) / (n - 3.0), np.nan)
    return fisher_interval(rho, var_z, level)


def effect_correlation(x_a: np.ndarray, x_b: np.ndarray, is_male: np.ndarray, *, level: float) -> Correlation:
    """Spearman correlation over features of Cohen's d in language a vs b, with its confidence interval.

    Features that vary in both languages are used. The interval (:func:`spearman_interval`) treats the
    features as a sample from the SAE's features and the images as given: it says how well this many
    features pin the correlation down. It leaves out the images' sampling noise, which makes each d
    noisy and so pulls ``rho`` towards 0 (and, where the same images move both languages' d alike,
    away from it); the per-feature CIs of d in the bias results show how noisy each d is.

    Parameters
    ----------
    x_a, x_b : numpy.ndarray
        (samples, features) values of the same images in language a and b.
    is_male : numpy.ndarray
        (samples,) bool.
    level : float
        Confidence level.
    """
    is_male = np.asarray(is_male, dtype=bool)
    varies = (x_a.max(axis=0) > x_a.min(axis=0)) & (x_b.max(axis=0) > x_b.min(axis=0))
    d = [cohens_d(x[is_male], x[~is_male]) for x in (np.asarray(x_a)[:, varies], np.asarray(x_b)[:, varies])]
    n_used = int(varies.sum())
    rho = float(spearman_rows(*d)[0]) if n_used > 1 else float("nan")
    low, high = spearman_interval(rho, n_used, level)
    return Correlation(rho, float(low), float(high), n_used)


def paired_correlation(x_a: np.ndarray, x_b: np.ndarray) -> np.ndarray:
    """Pearson correlation across samples of each feature in language a vs b (NaN if constant in either)."""
    a = np.asarray(x_a, dtype=np.float64)
    b = np.asarray(x_b, dtype=np.float64)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=0) / denom, np.nan)
