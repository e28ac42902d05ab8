"""Permutation nulls and bootstrap CIs against direct (slow) re-computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sae_store.analyze.bias import compare_groups
from sae_store.analyze.resample import (
    ROWS_PER_STEP,
    bca_interval,
    bootstrap_d_ci,
    centre,
    permutation_masks,
    permutation_null,
    resample_counts,
    weighted_d,
)
from sae_store.analyze.stats import bh_qvalues, cohens_d


@pytest.mark.parametrize("test", ["welch", "mannwhitney"])
def test_permutation_null_equals_testing_each_shuffle(test: str) -> None:
    rng = np.random.default_rng(0)
    n, n_feat = 80, 300
    is_male = rng.permutation(np.repeat([True, False], n // 2))
    x = np.where(rng.random((n, n_feat)) < 0.5, 0.0, rng.lognormal(size=(n, n_feat)))
    x[is_male, :20] += 1.0
    null = permutation_null(x, is_male, n_permutations=6, test=test, alpha=0.2, seed=3, keep_small_p=True,
                            feature_block=128)  # fmt: skip
    masks = permutation_masks(is_male, 6, seed=3).astype(bool)
    for i, mask in enumerate(masks):
        tests = compare_groups(x, mask)
        p = tests.p(test)
        assert null.counts[i] == int((bh_qvalues(p) <= 0.2).sum())
        np.testing.assert_allclose(np.sort(null.small_p[i]), np.sort(p[p <= 0.2]), rtol=1e-9, atol=1e-12)


def test_permutation_masks_keep_group_sizes() -> None:
    is_male = np.array([True] * 7 + [False] * 5)
    masks = permutation_masks(is_male, 50, seed=0)
    assert (masks.sum(axis=1) == 7).all()
    assert len({tuple(m) for m in masks}) > 40


def test_weighted_d_equals_d_of_explicit_resample() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 2, (25, 3)), rng.normal(0, 1, (30, 3))
    w_a, w_b = resample_counts(rng, 25, 4), resample_counts(rng, 30, 4)
    got = weighted_d(centre(a), centre(b), w_a, w_b)
    for r in range(4):
        ra = np.repeat(a, w_a[r].astype(int), axis=0)
        rb = np.repeat(b, w_b[r].astype(int), axis=0)
        np.testing.assert_allclose(got[r], cohens_d(ra, rb), rtol=1e-5)  # float32 products


def _d_statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    # Cohen's d along ``axis``, written out for scipy.stats.bootstrap (vectorised)
    na, nb = a.shape[axis], b.shape[axis]
    pooled = ((na - 1) * a.var(axis, ddof=1) + (nb - 1) * b.var(axis, ddof=1)) / (na + nb - 2)
    return (a.mean(axis) - b.mean(axis)) / np.sqrt(pooled)


def test_bca_interval_equals_scipy_on_the_same_replicates() -> None:
    """Given scipy's own bootstrap distribution, bca_interval reproduces scipy's BCa interval exactly."""
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(size=(25, 3)), 0.7 * rng.lognormal(size=(30, 3))
    for k in range(3):
        ref = stats.bootstrap((a[:, k], b[:, k]), _d_statistic, method="BCa", n_resamples=3000, rng=k)
        jackknife = [
            np.array([cohens_d(np.delete(a[:, k], i), b[:, k])[0] for i in range(25)])[:, None],
            np.array([cohens_d(a[:, k], np.delete(b[:, k], i))[0] for i in range(30)])[:, None],
        ]
        ours = bca_interval(cohens_d(a[:, k], b[:, k]), ref.bootstrap_distribution[:, None], jackknife, 0.95)
        np.testing.assert_allclose(
            [ours.low[0], ours.high[0]],
            [ref.confidence_interval.low, ref.confidence_interval.high],
            rtol=1e-12,
        )
        assert ours.excluded[0] == 0


def test_bootstrap_d_ci_agrees_with_scipy_bca() -> None:
    """Our resampling (float32 products, closed-form jackknife) against scipy.stats.bootstrap's BCa."""
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(size=(25, 3)), 0.7 * rng.lognormal(size=(30, 3))
    ours = bootstrap_d_ci(a, b, n_boot=40_000, level=0.95, seed=0)
    for k in range(3):
        ref = stats.bootstrap((a[:, k], b[:, k]), _d_statistic, method="BCa", n_resamples=40_000, rng=1)
        # two independent sets of 40,000 resamples: the bounds agree to Monte-Carlo error
        assert ours.low[k] == pytest.approx(ref.confidence_interval.low, abs=0.03)
        assert ours.high[k] == pytest.approx(ref.confidence_interval.high, abs=0.03)


@pytest.mark.parametrize("d", [0.0, 0.8])
def test_bootstrap_d_ci_covers_population_d_at_its_level(d: float) -> None:
    """1,000 simulated data sets (one per column) of two normal groups of 40: ~95 % of the 95 % BCa
    intervals contain the true d (the binomial SE of the coverage is 0.7 %)."""
    rng = np.random.default_rng(2)
    a = rng.normal(d, 1.0, (40, 1000))
    b = rng.normal(0.0, 1.0, (40, 1000))
    ci = bootstrap_d_ci(a, b, n_boot=1000, level=0.95, seed=0)
    covered = float(((ci.low <= d) & (d <= ci.high)).mean())
    assert 0.93 <= covered <= 0.97, covered
    # the interval contains its estimate wherever the estimate lies inside its replicates' central 95 %
    est = cohens_d(a, b)
    assert ((ci.low <= est) & (est <= ci.high)).mean() > 0.999


def test_bootstrap_d_ci_leaves_out_resamples_without_spread() -> None:
    """The demo's layer 0, ar, female-biased feature: active in 2 of 22 men, 21 of 22 women. Resamples
    drawing neither active man have no male spread; they are left out and counted."""
    male = np.zeros(22)
    male[[12, 13]] = [0.0401, 0.0375]
    # fmt: off
    female = np.array([0.0401, 0.0326, 0.0283, 0.0386, 0.0374, 0.0388, 0.0389, 0.0365, 0.0423, 0.0352, 0.0532,
                       0.0486, 0.0387, 0.0472, 0.0337, 0.0, 0.0379, 0.0403, 0.0392, 0.0382, 0.0477, 0.0463])
    # fmt: on
    n_boot = 1000
    ci = bootstrap_d_ci(male[:, None], female[:, None], n_boot=n_boot, level=0.95, seed=0)
    # the same draws, replayed: blocks of male then female counts from one generator
    rng, without_active = np.random.default_rng(0), 0
    for r0 in range(0, n_boot, ROWS_PER_STEP):
        rows = min(ROWS_PER_STEP, n_boot - r0)
        w_male = resample_counts(rng, 22, rows)
        resample_counts(rng, 22, rows)  # the female rows: no female resample loses all spread here
        without_active += int((w_male[:, [12, 13]].sum(axis=1) == 0).sum())
    assert ci.excluded[0] == without_active
    assert 0.08 * n_boot < without_active < 0.18 * n_boot  # (20/22)^22 = 12 % of resamples
    # d = -3.19; resamples without the active men reach d < -10 and once gave a percentile bound of -12
    d = cohens_d(male, female)[0]
    assert -6.0 < ci.low[0] < d < ci.high[0] < 0
    # nothing to leave out where both groups keep their spread in every resample
    assert (
        bootstrap_d_ci(female[:, None] + 1, female[:, None], n_boot=200, level=0.95, seed=0).excluded[0] == 0
    )


def test_bca_interval_is_nan_where_undefined() -> None:
    est = np.array([1.0, 0.5, 0.5])
    rep = np.array([[0.1, 0.4, np.nan], [0.2, 0.6, np.nan], [0.3, 0.5, 0.5]])
    ci = bca_interval(est, rep, [np.array([[0.9, 0.4, 0.5], [1.1, 0.6, 0.5]])], 0.9)
    # column 0: the estimate lies above every replicate (z0 infinite); column 2: one replicate kept
    assert np.isnan(ci.low[0]) and np.isnan(ci.high[0]) and np.isnan(ci.low[2])
    assert ci.low[1] <= 0.5 <= ci.high[1]
    assert list(ci.excluded) == [0, 0, 2]
