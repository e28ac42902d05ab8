"""The vectorised tests against scipy, column by column, including ties and zero-inflated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sae_store.analyze.bias import biased_features, compare_groups
from sae_store.analyze.stats import (
    active_fraction,
    bh_count,
    bh_qvalues,
    cohens_d,
    mann_whitney_u,
    rank_columns,
    welch_ttest,
)


def _columns(seed: int, n_a: int = 60, n_b: int = 45, n_feat: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Continuous, heavily tied (rounded), zero-inflated and shifted columns side by side."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, (n_a, n_feat))
    b = rng.normal(0.4, 2.0, (n_b, n_feat))
    q = n_feat // 4
    a[:, :q], b[:, :q] = np.round(a[:, :q]), np.round(b[:, :q])  # ties
    a[:, q : 2 * q] = np.where(rng.random((n_a, q)) < 0.8, 0.0, rng.lognormal(size=(n_a, q)))  # zero-inflated
    b[:, q : 2 * q] = np.where(rng.random((n_b, q)) < 0.6, 0.0, rng.lognormal(size=(n_b, q)))
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_matches_scipy(seed: int) -> None:
    a, b = _columns(seed)
    ours = welch_ttest(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose(ours.p, ref.pvalue, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.t, ref.statistic, rtol=1e-12)
    np.testing.assert_allclose(ours.df, ref.df, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mann_whitney_matches_scipy_asymptotic_and_auto(seed: int) -> None:
    a, b = _columns(seed)
    ours = mann_whitney_u(a, b)
    for method in ("asymptotic", "auto"):  # both groups > 8: scipy's "auto" is the asymptotic test
        ref = stats.mannwhitneyu(a, b, method=method)
        np.testing.assert_allclose(ours.p, ref.pvalue, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(ours.u, ref.statistic)


def test_mann_whitney_single_column_with_many_ties() -> None:
    a = np.array([0, 0, 0, 0, 1, 1, 2, 0, 0, 3, 0, 0], dtype=float)
    b = np.array([0, 1, 1, 2, 2, 2, 3, 3, 0, 4, 4, 1, 0], dtype=float)
    ours = mann_whitney_u(a, b)
    ref = stats.mannwhitneyu(a, b)
    assert ours.p[0] == pytest.approx(ref.pvalue, abs=1e-12)


def test_degenerate_columns_get_p_one_and_zero_d() -> None:
    a = np.zeros((20, 2))
    b = np.zeros((15, 2))
    b[:, 1] = 0.0
    assert welch_ttest(a, b).p.tolist() == [1.0, 1.0]
    assert mann_whitney_u(a, b).p.tolist() == [1.0, 1.0]
    assert cohens_d(a, b).tolist() == [0.0, 0.0]


def test_cohens_d_uses_pooled_sd() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 1, (30, 4)), rng.normal(0, 3, (50, 4))
    pooled = np.sqrt((29 * a.var(0, ddof=1) + 49 * b.var(0, ddof=1)) / 78)
    np.testing.assert_allclose(cohens_d(a, b), (a.mean(0) - b.mean(0)) / pooled, rtol=1e-12)


def test_rank_columns_matches_rankdata_and_tie_term() -> None:
    a, _ = _columns(5)
    ranks = rank_columns(a)
    np.testing.assert_array_equal(ranks.ranks_FN.T, stats.rankdata(a, axis=0))
    for f in (0, 40, 100):
        _, counts = np.unique(a[:, f], return_counts=True)
        assert ranks.tie_term[f] == pytest.approx(float((counts**3 - counts).sum()))


def test_active_fraction() -> None:
    x = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    assert active_fraction(x).tolist() == [0.5, 0.5]


def test_bh_qvalues_match_scipy_and_count() -> None:
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(900), rng.random(100) * 1e-4])
    q = bh_qvalues(p)
    np.testing.assert_allclose(q, stats.false_discovery_control(p, method="bh"), rtol=1e-12)
    assert bh_count(p[p <= 0.05], p.size, 0.05) == int((q <= 0.05).sum())
    assert bh_qvalues(np.array([np.nan, 0.01]))[0] == 1.0


def test_compare_groups_blocks_agree_with_one_pass() -> None:
    a, b = _columns(7, n_feat=50)
    x = np.concatenate([a, b])
    is_male = np.arange(len(x)) < len(a)
    whole = compare_groups(x, is_male, feature_block=4096)
    blocked = compare_groups(x, is_male, feature_block=7)
    np.testing.assert_array_equal(whole.p_mwu, blocked.p_mwu)
    np.testing.assert_array_equal(whole.d, blocked.d)
    np.testing.assert_allclose(whole.male_mean, a.mean(0))
    assert (whole.n_male, whole.n_female) == (len(a), len(b))


def test_biased_features_are_significant_and_ranked() -> None:
    d = np.array([0.5, -1.0, 2.0, -0.2, 1.0, -3.0])
    q = np.array([0.01, 0.01, 0.2, 0.04, 0.001, 0.03])
    lists = biased_features(d, q, alpha=0.05)
    assert lists.male.tolist() == [4, 0]  # feature 2 has the largest d but is not significant
    assert lists.female.tolist() == [5, 1, 3]
    assert biased_features(d, q, alpha=0.05, top_n=1).female.tolist() == [5]
