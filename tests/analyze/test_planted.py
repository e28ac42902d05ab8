"""Calibration on data with a known answer: recall, false discoveries, and the permutation null.

Stated setting: 500 images per gender, 2,000 zero-inflated heavy-tailed features (60 % exact zeros,
lognormal otherwise), 400 of them shifted between genders by Cohen's d = 0.5 (half up for men,
half up for women). Requirements: recall of planted features at q < 0.05 >= 0.95; false discovery
proportion averaged over seeds <= 0.05; no discoveries to speak of when the labels are shuffled.
"""

from __future__ import annotations

import numpy as np
import pytest

from sae_store.analyze.bias import compare_groups
from sae_store.analyze.resample import permutation_null
from sae_store.analyze.stats import bh_qvalues

from .synthetic import planted_matrix

N_PER_GROUP, N_FEATURES, N_PLANTED, EFFECT = 500, 2000, 400, 0.5
SEEDS = range(6)


@pytest.mark.parametrize("test", ["welch", "mannwhitney"])
def test_recall_and_false_discoveries(test: str) -> None:
    recalls, fdps = [], []
    for seed in SEEDS:
        x, is_male, planted = planted_matrix(N_PER_GROUP, N_FEATURES, N_PLANTED, EFFECT, seed)
        tests = compare_groups(x, is_male)
        found = np.flatnonzero(bh_qvalues(tests.p(test)) < 0.05)
        true = np.isin(found, planted)
        recalls.append(true.sum() / N_PLANTED)
        fdps.append(float((~true).mean()) if found.size else 0.0)
        # direction: the first half of the planted features is male-biased
        assert (tests.d[planted[: N_PLANTED // 2]] > 0).mean() > 0.99
    assert np.mean(recalls) >= 0.95, recalls
    assert np.mean(fdps) <= 0.05, fdps


@pytest.mark.parametrize("test", ["welch", "mannwhitney"])
def test_shuffled_labels_give_almost_no_discoveries(test: str) -> None:
    x, is_male, _ = planted_matrix(N_PER_GROUP, N_FEATURES, N_PLANTED, EFFECT, seed=0)
    null = permutation_null(x, is_male, n_permutations=40, test=test, alpha=0.05, seed=1)
    real = int((bh_qvalues(compare_groups(x, is_male).p(test)) < 0.05).sum())
    # under the global null BH at 5 % makes "any discovery" a ~5 % event per shuffle
    assert (null.counts > 0).mean() <= 0.15
    assert null.counts.mean() <= 0.5
    assert real >= 380
