"""Permutation nulls and bootstrap CIs against direct (slow) re-computation."""

from __future__ import annotations

import numpy as np
import pytest

from sae_store.analyze.bias import compare_groups
from sae_store.analyze.resample import (
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


def test_bootstrap_ci_covers_population_d() -> None:
    """Percentile CIs of d: ~95 % of intervals contain the true d (here 0.5) over many features."""
    rng = np.random.default_rng(2)
    n_feat = 400
    a = rng.normal(0.5, 1.0, (150, n_feat))
    b = rng.normal(0.0, 1.0, (150, n_feat))
    ci = bootstrap_d_ci(a, b, n_boot=400, level=0.95, seed=0)
    covered = float(((ci.low <= 0.5) & (ci.high >= 0.5)).mean())
    assert 0.90 <= covered <= 0.99
    assert (ci.low < cohens_d(a, b)).all() and (cohens_d(a, b) < ci.high).all()
