"""Two-group tests computed for every feature at once (columns of a samples x features matrix).

All functions take ``a`` (n_a, F) and ``b`` (n_b, F) and return one value per column, in float64.
They reproduce :func:`scipy.stats.ttest_ind` with ``equal_var=False`` and
:func:`scipy.stats.mannwhitneyu` with ``method="asymptotic"`` (tie-corrected normal approximation
with continuity correction), which is also what scipy's ``method="auto"`` picks whenever both groups
have more than 8 samples; :class:`~sae_store.analyze.config.BiasConfig` requires at least 9 per
group, so the two agree.

Degenerate columns (zero variance in both groups, e.g. a feature that never fires) get p = 1 and
d = 0 instead of scipy's NaN: no evidence of a difference, and no NaN travelling into the q-values.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import special, stats


class TTestResult(NamedTuple):
    """Welch's t-test per column."""

    t: np.ndarray
    df: np.ndarray
    p: np.ndarray


class MannWhitneyResult(NamedTuple):
    """Mann-Whitney U test per column; ``u`` is the statistic of the first group (scipy's U1)."""

    u: np.ndarray
    p: np.ndarray


class Ranks(NamedTuple):
    """Average ranks (1-based) of each column and its tie term sum(t^3 - t) over tie groups."""

    ranks_FN: np.ndarray
    """Ranks transposed to (feature, sample), float64."""
    tie_term: np.ndarray
    """(feature,) sum over groups of tied values of t^3 - t."""


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def welch_from_moments(
    m_a: np.ndarray, v_a: np.ndarray, n_a: int, m_b: np.ndarray, v_b: np.ndarray, n_b: int
) -> TTestResult:
    """Welch's test from group means and variances (ddof=1); p = 1 where both variances are 0."""
    va, vb = v_a / n_a, v_b / n_b
    se2 = va + vb
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (m_a - m_b) / np.sqrt(se2)
        df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
        p = 2.0 * special.stdtr(df, -np.abs(t))
    flat = se2 == 0
    t, df, p = np.where(flat, 0.0, t), np.where(flat, float(n_a + n_b - 2), df), np.where(flat, 1.0, p)
    return TTestResult(t, df, np.clip(p, 0.0, 1.0))


def welch_ttest(a: np.ndarray, b: np.ndarray) -> TTestResult:
    """Welch's unequal-variance t-test of ``a`` against ``b`` for every column, two-sided.

    Parameters
    ----------
    a, b : numpy.ndarray
        (n_a, F) and (n_b, F) values (or 1-D for one column); n_a, n_b >= 2.

    Returns
    -------
    TTestResult
        ``t`` (positive when ``a`` has the larger mean), Welch-Satterthwaite ``df`` and ``p``.
    """
    a, b = _as_2d(a), _as_2d(b)
    return welch_from_moments(
        a.mean(axis=0), a.var(axis=0, ddof=1), a.shape[0], b.mean(axis=0), b.var(axis=0, ddof=1), b.shape[0]
    )


class _Runs(NamedTuple):
    """Each column sorted, and the runs of equal values in the flattened (feature, sample) order."""

    order: np.ndarray
    """(F, n) argsort of each column."""
    starts: np.ndarray
    """Flat positions where a run of equal sorted values begins (every column starts one)."""
    lengths: np.ndarray
    """Length of each run."""
    n: int


def _runs(x: np.ndarray) -> _Runs:
    # One sort per column; runs are found in the flattened sorted array, so the cost does not
    # depend on how many ties there are (zero-inflated features are mostly one tie group).
    # float32 input is sorted as is: equal values stay equal and the sort moves half the bytes.
    x = np.asarray(x)
    x = x[:, None] if x.ndim == 1 else x
    x_FN = np.ascontiguousarray(x.T if x.dtype.kind == "f" else x.T.astype(np.float64))
    order = np.argsort(x_FN, axis=1, kind="stable")
    sorted_FN = np.take_along_axis(x_FN, order, axis=1)
    new_run = np.empty(sorted_FN.shape, dtype=bool)
    new_run[:, 0] = True
    np.not_equal(sorted_FN[:, 1:], sorted_FN[:, :-1], out=new_run[:, 1:])
    starts = np.flatnonzero(new_run.ravel())
    return _Runs(order, starts, np.diff(np.append(starts, new_run.size)), x_FN.shape[1])


def _tie_term(runs: _Runs) -> np.ndarray:
    t = runs.lengths.astype(np.float64)
    return np.bincount(runs.starts // runs.n, weights=t**3 - t, minlength=runs.order.shape[0])


def _mean_ranks(runs: _Runs) -> np.ndarray:
    return (runs.starts % runs.n) + (runs.lengths + 1) / 2.0


def rank_columns(x: np.ndarray) -> Ranks:
    """Average ranks (1-based) of every column of ``x`` (n, F) and the tie term of rank tests."""
    runs = _runs(x)
    ranks_FN = np.empty(runs.order.shape, dtype=np.float64)
    sorted_ranks = np.repeat(_mean_ranks(runs), runs.lengths).reshape(runs.order.shape)
    np.put_along_axis(ranks_FN, runs.order, sorted_ranks, axis=1)
    return Ranks(ranks_FN, _tie_term(runs))


def rank_sum_test(x: np.ndarray, first: np.ndarray) -> MannWhitneyResult:
    """Mann-Whitney U of the rows flagged ``first`` against the others, for every column of ``x`` (n, F).

    Sums ranks run by run (count of ``first`` rows in each run of ties times the run's mean rank)
    instead of scattering every rank back: exact, and about twice as fast as full ranking.
    """
    first = np.asarray(first, dtype=bool)
    runs = _runs(x)
    cum = np.concatenate([[0], np.cumsum(first[runs.order].ravel(), dtype=np.int64)])
    in_run = cum[runs.starts + runs.lengths] - cum[runs.starts]
    r1 = np.bincount(runs.starts // runs.n, weights=_mean_ranks(runs) * in_run, minlength=runs.order.shape[0])
    n1 = int(first.sum())
    u1 = r1 - n1 * (n1 + 1) / 2.0
    return MannWhitneyResult(u1, mwu_pvalue(u1, n1, first.size - n1, _tie_term(runs)))


def mwu_pvalue(u1: np.ndarray, n1: int, n2: int, tie_term: np.ndarray) -> np.ndarray:
    """Two-sided asymptotic Mann-Whitney p-value from U1, as scipy computes it.

    ``u1`` may have any shape whose last axis broadcasts against ``tie_term`` (e.g. permutations x
    features).
    """
    n = n1 + n2
    u = np.maximum(u1, n1 * n2 - u1)
    s = np.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2.0 - 0.5) / s
    return np.clip(2.0 * special.ndtr(-z), 0.0, 1.0)


def mann_whitney_u(a: np.ndarray, b: np.ndarray) -> MannWhitneyResult:
    """Mann-Whitney U test of ``a`` against ``b`` for every column (two-sided, asymptotic).

    Parameters
    ----------
    a, b : numpy.ndarray
        (n_a, F) and (n_b, F) values (or 1-D for one column).

    Returns
    -------
    MannWhitneyResult
        ``u`` = U of ``a`` (scipy's statistic) and the tie-corrected, continuity-corrected ``p``.
    """
    a, b = _as_2d(a), _as_2d(b)
    first = np.arange(a.shape[0] + b.shape[0]) < a.shape[0]
    return rank_sum_test(np.concatenate([a, b], axis=0), first)


def d_from_moments(
    m_a: np.ndarray, v_a: np.ndarray, n_a: int, m_b: np.ndarray, v_b: np.ndarray, n_b: int
) -> np.ndarray:
    """Cohen's d (pooled SD) from group means and variances (ddof=1); 0 where both are constant and equal.

    Where both groups are constant but different, d is +-inf (a perfect separation).
    """
    sd = np.sqrt(((n_a - 1) * v_a + (n_b - 1) * v_b) / (n_a + n_b - 2))
    diff = m_a - m_b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((sd == 0) & (diff == 0), 0.0, diff / sd)


def cohens_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's d = (mean_a - mean_b) / pooled SD per column (see :func:`d_from_moments`)."""
    a, b = _as_2d(a), _as_2d(b)
    return d_from_moments(
        a.mean(axis=0), a.var(axis=0, ddof=1), a.shape[0], b.mean(axis=0), b.var(axis=0, ddof=1), b.shape[0]
    )


def active_fraction(x: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Fraction of rows (samples) where each column is above ``threshold`` (activation frequency)."""
    return np.asarray((_as_2d(x) > threshold).mean(axis=0), dtype=np.float64)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (adjusted p-values) of a 1-D array; NaN p-values count as 1."""
    p = np.nan_to_num(np.asarray(p, dtype=np.float64).ravel(), nan=1.0)
    if p.size == 0:
        return p
    return np.asarray(stats.false_discovery_control(np.clip(p, 0.0, 1.0), method="bh"))


def bh_count(small_p: np.ndarray, n_tests: int, alpha: float) -> int:
    """Number of BH discoveries at level ``alpha`` among ``n_tests`` tests, given only their p <= alpha.

    BH rejects the k smallest p-values for the largest k with p_(k) <= alpha k / n_tests; since that
    bound never exceeds alpha, p-values above alpha can be dropped before counting. This lets
    permutation nulls keep only the small p-values of each permutation (and pool them across
    layers for a global correction).
    """
    p = np.sort(np.asarray(small_p, dtype=np.float64).ravel())
    if p.size == 0:
        return 0
    ok = np.flatnonzero(p <= alpha * np.arange(1, p.size + 1) / n_tests)
    return int(ok[-1] + 1) if ok.size else 0
