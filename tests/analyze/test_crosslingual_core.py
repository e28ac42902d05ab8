"""Cross-lingual statistics, decoder matching and probes on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import sae_store.analyze.matching as matching
from sae_store.analyze.crosslingual import (
    effect_correlation,
    fisher_interval,
    paired_correlation,
    spearman_interval,
    spearman_rows,
    topk_overlap,
)
from sae_store.analyze.matching import lineage, match_features
from sae_store.analyze.probe import gender_probe
from sae_store.analyze.run_crosslayer import abs_interval
from sae_store.analyze.stats import cohens_d
from sae_store.errors import SaeStoreError


def test_overlap_of_independent_random_sets_is_k2_over_n_on_average() -> None:
    rng = np.random.default_rng(0)
    n, k = 2000, 100
    counts = [topk_overlap(rng.random(n), rng.random(n), k, permutations=0, seed=0).count for _ in range(400)]
    expected = k * k / n  # 5.0; the SE of the mean of 400 hypergeometric draws is ~0.11
    assert abs(np.mean(counts) - expected) < 0.35


def test_overlap_counts_jaccard_and_p_values() -> None:
    a = np.arange(100, dtype=float)  # top 10: 90..99
    b = a.copy()
    b[[90, 91]] = -1  # two of a's top 10 drop out of b's
    o = topk_overlap(a, b, 10, permutations=2000, seed=0)
    assert (o.count, o.k, o.n) == (8, 10, 100)
    assert o.jaccard == pytest.approx(8 / 12)
    assert o.expected == pytest.approx(1.0)
    assert o.p_exact == pytest.approx(stats.hypergeom.sf(7, 100, 10, 10))
    assert o.p_value == pytest.approx(1 / 2001)  # no random relabelling reaches 8 of 10


def test_spearman_rows_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(size=(4, 200)), 1)
    b = a + rng.normal(size=(4, 200))
    got = spearman_rows(a, b)
    np.testing.assert_allclose(got, [stats.spearmanr(a[i], b[i]).statistic for i in range(4)], rtol=1e-12)


def test_fisher_interval_with_pearson_variance_equals_scipy() -> None:
    """The Fisher-z machinery: with var 1 / (n - 3) it is scipy's interval of a Pearson correlation."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    res = stats.pearsonr(x, y)
    low, high = fisher_interval(res.statistic, 1.0 / (40 - 3), 0.9)
    ref = res.confidence_interval(0.9)
    np.testing.assert_allclose([low, high], [ref.low, ref.high], rtol=1e-12)


@pytest.mark.parametrize(("n", "r"), [(20, 0.0), (50, 0.8), (245, 0.95)])
def test_spearman_interval_covers_the_population_rho_at_its_level(n: int, r: float) -> None:
    """2,000 simulated data sets of n bivariate-normal pairs with Pearson r, whose population Spearman
    rho is 6/pi asin(r/2): ~95 % of the 95 % intervals contain it (the binomial SE is 0.5 %)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, n))
    y = r * x + np.sqrt(1 - r * r) * rng.normal(size=(2000, n))
    population = 6 / np.pi * np.arcsin(r / 2)
    rho = spearman_rows(x, y)
    low, high = spearman_interval(rho, n, 0.95)
    covered = float(((low <= population) & (population <= high)).mean())
    assert 0.93 <= covered <= 0.97, covered
    assert ((low <= rho) & (rho <= high)).all()  # symmetric in z: the estimate is always inside


def test_effect_correlation_is_spearman_of_d_with_its_interval() -> None:
    rng = np.random.default_rng(2)
    n, n_feat = 60, 300
    d_a = rng.normal(0, 0.4, n_feat)
    d_b = 0.8 * d_a + rng.normal(0, 0.2, n_feat)
    is_male = np.repeat([True, False], n)
    x_a, x_b = rng.normal(size=(2 * n, n_feat)), rng.normal(size=(2 * n, n_feat))
    x_a[is_male] += d_a
    x_b[is_male] += d_b
    x_a[:, :5] = x_b[:, :5] = 0.0  # never-active features are left out
    corr = effect_correlation(x_a, x_b, is_male, level=0.95)
    assert corr.n_features == n_feat - 5
    ref = stats.spearmanr(
        cohens_d(x_a[is_male, 5:], x_a[~is_male, 5:]), cohens_d(x_b[is_male, 5:], x_b[~is_male, 5:])
    )
    assert corr.rho == pytest.approx(ref.statistic, rel=1e-12)
    z, half = np.arctanh(corr.rho), 1.959964 * np.sqrt((1 + corr.rho**2 / 2) / (n_feat - 5 - 3))
    assert (corr.low, corr.high) == pytest.approx((np.tanh(z - half), np.tanh(z + half)), rel=1e-6)
    assert corr.low < corr.rho < corr.high
    few = effect_correlation(x_a[:, 4:7], x_b[:, 4:7], is_male, level=0.95)  # two features vary
    assert few.n_features == 2 and np.isnan(few.low) and np.isnan(few.high)


def test_paired_correlation_per_feature() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 3))
    b = np.stack([a[:, 0], -a[:, 1], rng.normal(size=50)], axis=1)
    r = paired_correlation(a, b)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(-1.0)
    assert r[2] == pytest.approx(np.corrcoef(a[:, 2], b[:, 2])[0, 1])
    assert np.isnan(paired_correlation(np.zeros((5, 1)), rng.normal(size=(5, 1)))[0])


def test_matching_recovers_a_permuted_noisy_copy() -> None:
    rng = np.random.default_rng(4)
    W = rng.normal(size=(300, 32))
    perm = rng.permutation(300)
    m = match_features(W, W[perm] + 0.2 * rng.normal(size=(300, 32)))
    assert m.exact
    assert (perm[m.index] == np.arange(300)).all()
    quality = m.quality()
    assert quality["mean_cosine"] > 0.95 and quality["mean_cosine"] > quality["chance_cosine"]


def test_sparse_matching_equals_dense_assignment(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    W_a, W_b = rng.normal(size=(200, 16)), rng.normal(size=(180, 16))
    dense = match_features(W_a, W_b)
    monkeypatch.setattr(matching, "DENSE_LIMIT", 50)
    every = match_features(W_a, W_b, candidates=180)  # all candidates: the same optimum
    assert every.exact and np.nansum(every.cosine) == pytest.approx(np.nansum(dense.cosine), rel=1e-6)
    few = match_features(W_a, W_b, candidates=2)  # infeasible at first: doubles until a full matching exists
    assert not few.exact
    assert (few.index >= 0).sum() == 180  # every feature of the smaller SAE is matched
    assert len(set(few.index[few.index >= 0].tolist())) == 180
    # random 16-d directions are the hardest case for candidate pruning; still within 1 % of optimal
    assert np.nansum(few.cosine) >= 0.99 * np.nansum(dense.cosine)


def test_matching_refuses_different_widths() -> None:
    with pytest.raises(SaeStoreError, match=r"same d_in; got shapes \(4, 8\) and \(4, 9\)"):
        match_features(np.ones((4, 8)), np.ones((4, 9)))


def test_lineage_finds_the_rotated_successor() -> None:
    rng = np.random.default_rng(6)
    W = rng.normal(size=(40, 24))
    nxt = W[::-1] + 0.05 * rng.normal(size=(40, 24))
    link = lineage(W, nxt, np.array([0, 5, 39]))
    assert link.next_feature.tolist() == [39, 34, 0]
    assert (link.cosine > 0.99).all()


def test_gender_probe_vs_chance() -> None:
    rng = np.random.default_rng(7)
    y = rng.random(300) < 0.6
    signal = rng.normal(size=(300, 10))
    signal[:, 0] += 2.5 * y
    strong = gender_probe(signal, y, folds=5, C=1.0, seed=0)
    noise = gender_probe(rng.normal(size=(300, 10)), y, folds=5, C=1.0, seed=0)
    assert strong.accuracy > 0.85 and strong.ci_low > strong.chance_accuracy
    assert noise.chance_accuracy == max(y.mean(), 1 - y.mean())  # the larger gender's share
    assert noise.ci_low < noise.chance_accuracy + 0.05
    assert abs(noise.balanced_accuracy - 0.5) < 0.1


def test_probe_chance_of_a_balanced_set_is_one_half() -> None:
    """22 + 22 samples in 5 folds: chance is 0.5, not the 0.45 that guessing each training fold's
    majority out of fold scores (that majority is always the test fold's minority)."""
    rng = np.random.default_rng(8)
    y = np.repeat([True, False], 22)
    probe = gender_probe(rng.normal(size=(44, 6)), y, folds=5, C=1.0, seed=0)
    assert probe.chance_accuracy == 0.5


def test_abs_interval_of_d() -> None:
    assert abs_interval(0.5, 1.5) == [0.5, 1.5]
    assert abs_interval(-2.0, -1.0) == [1.0, 2.0]
    assert abs_interval(-0.2, 0.6) == [0.0, 0.6]
    assert np.isnan(abs_interval(float("nan"), float("nan"))[0])
