"""Statistics of effects against scipy and synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sae_store.errors import SaeStoreError
from sae_store.intervene.stats import compare_controls, differential, paired_stats


def test_paired_stats_match_scipy() -> None:
    rng = np.random.default_rng(1)
    deltas = rng.normal(0.3, 1.0, size=40)
    deltas[[3, 9]] = np.nan  # samples without a value are dropped
    res = paired_stats(deltas, n_boot=5000, seed=0)
    finite = deltas[np.isfinite(deltas)]
    ref = stats.ttest_1samp(finite, 0.0)  # the test of the same mean the interval is about
    assert res.n == 38
    assert res.mean == pytest.approx(finite.mean())
    assert res.t == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    # scipy draws its resamples from the same generator in the same order: the BCa bounds are identical
    boot = stats.bootstrap((finite,), np.mean, n_resamples=5000, method="BCa", rng=np.random.default_rng(0))
    assert res.ci_low == pytest.approx(boot.confidence_interval.low, rel=1e-12)
    assert res.ci_high == pytest.approx(boot.confidence_interval.high, rel=1e-12)
    assert paired_stats(deltas, n_boot=500, seed=4) == paired_stats(deltas, n_boot=500, seed=4)


def test_paired_stats_degenerate_cases() -> None:
    zero = paired_stats(np.zeros(5))
    assert (zero.mean, zero.ci_low, zero.ci_high, zero.p_value) == (0.0, 0.0, 0.0, 1.0)
    constant = paired_stats(np.full(4, 1.5))
    assert (constant.ci_low, constant.ci_high, constant.p_value) == (1.5, 1.5, 0.0)
    one = paired_stats(np.array([2.0, np.nan]))
    assert (one.n, one.mean, one.ci_low, one.ci_high) == (1, 2.0, 2.0, 2.0) and np.isnan(one.p_value)
    empty = paired_stats(np.array([np.nan]))
    assert empty.n == 0 and np.isnan(empty.mean) and np.isnan(empty.p_value)


def test_differential_known_answer() -> None:
    rng = np.random.default_rng(0)
    genders = np.array(["male"] * 200 + ["female"] * 300 + ["unknown"] * 5)
    effects = np.concatenate([rng.normal(1.0, 0.1, 200), rng.normal(-1.0, 0.1, 300), np.full(5, 99.0)])
    diff = differential(effects, genders, n_boot=2000, seed=0)
    assert diff.value == pytest.approx(effects[:200].mean() - effects[200:500].mean())
    assert diff.value == pytest.approx(2.0, abs=0.05)
    assert diff.ci_low < diff.value < diff.ci_high
    assert diff.ci_high - diff.ci_low < 0.1
    assert (diff.n_male, diff.n_female) == (200, 300)


def test_differential_matches_scipy() -> None:
    """The BCa interval and the Welch test are both about mean(male) - mean(female)."""
    rng = np.random.default_rng(3)
    male, female = rng.normal(0.2, 1.0, 30), rng.normal(0.0, 2.0, 25)
    genders = np.array(["male"] * 30 + ["female"] * 25)
    diff = differential(np.concatenate([male, female]), genders, n_boot=3000, seed=5)
    ref = stats.bootstrap(
        (male, female),
        lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
        method="BCa",
        n_resamples=3000,
        rng=np.random.default_rng(5),  # the same draws: male resamples, then female
    )
    assert (diff.ci_low, diff.ci_high) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12
    )
    welch = stats.ttest_ind(male, female, equal_var=False)
    assert (diff.t, diff.p_value) == pytest.approx((welch.statistic, welch.pvalue), rel=1e-10)


def test_differential_needs_both_groups() -> None:
    with pytest.raises(SaeStoreError, match="got 3 male and 0 female"):
        differential(np.ones(3), np.array(["male"] * 3))
    with pytest.raises(SaeStoreError, match="got 0 male and 2 female"):
        differential(np.array([np.nan, 1.0, 2.0]), np.array(["male", "female", "female"]))


def test_compare_controls_known_answer() -> None:
    genders = np.array(["male", "male", "female", "female"])
    targeted = np.array([3.0, 1.0, -1.0, -1.0])  # differential 3, mean |effect| 1.5
    controls = np.array(
        [
            [1.0, 1.0, 0.0, 0.0],  # differential 1, mean |effect| 0.5
            [0.0, 0.0, 1.0, 1.0],  # differential -1, mean |effect| 0.5
            [4.0, 4.0, 0.0, 0.0],  # differential 4, mean |effect| 2
        ]
    )
    cmp = compare_controls(targeted, controls, genders)
    assert cmp.n_controls == 3
    assert cmp.random_differential == pytest.approx((1 - 1 + 4) / 3)
    assert cmp.random_mean_effect == pytest.approx((0.5 + 0.5 + 2.0) / 3)
    assert cmp.differential_ratio == pytest.approx(3 / 2)
    assert cmp.magnitude_ratio == pytest.approx(1.5 / 1.0)
    assert cmp.p_random == pytest.approx((1 + 1) / 4)  # one control at least as extreme
    assert cmp.random_differential_low == pytest.approx(np.percentile([1, -1, 4], 2.5))
    with pytest.raises(SaeStoreError, match="at least one control set"):
        compare_controls(targeted, np.zeros((0, 4)), genders)
