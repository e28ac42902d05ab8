"""Gender bias of SAE features: per-feature tests on per-sample values of one (layer, language).

Pure numpy on a (samples, features) matrix and a boolean "is male" vector; the xarray and dask
layer is :mod:`sae_store.analyze.run_bias`. Effects are signed male minus female: d > 0 means the
feature is more active on images captioned as men.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from sae_store.analyze.config import BiasConfig
from sae_store.analyze.resample import BootstrapCI, PermutationNull, bootstrap_d_ci, permutation_null
from sae_store.analyze.stats import (
    active_fraction,
    bh_qvalues,
    d_from_moments,
    rank_sum_test,
    welch_from_moments,
)

#: Per-feature arrays of :class:`FeatureTests`, in the order they are stored.
TEST_FIELDS = (
    "male_mean",
    "female_mean",
    "male_freq",
    "female_freq",
    "d",
    "t",
    "df",
    "p_welch",
    "u",
    "p_mwu",
)


@dataclass(frozen=True)
class FeatureTests:
    """Statistics of every feature of one (layer, language); each array has shape (features,)."""

    n_male: int
    n_female: int
    male_mean: np.ndarray
    female_mean: np.ndarray
    male_freq: np.ndarray
    """Fraction of male samples where the feature is active (value > 0)."""
    female_freq: np.ndarray
    d: np.ndarray
    """Cohen's d with pooled SD, male minus female."""
    t: np.ndarray
    """Welch's t statistic (male minus female)."""
    df: np.ndarray
    """Welch-Satterthwaite degrees of freedom."""
    p_welch: np.ndarray
    u: np.ndarray
    """Mann-Whitney U of the male group."""
    p_mwu: np.ndarray

    def p(self, test: str) -> np.ndarray:
        """The p-values of ``test`` (``"welch"`` or ``"mannwhitney"``)."""
        return self.p_welch if test == "welch" else self.p_mwu


def compare_groups(x_NF: np.ndarray, is_male: np.ndarray, *, feature_block: int = 4096) -> FeatureTests:
    """Welch t, Mann-Whitney U, Cohen's d, means and activation frequencies of every feature.

    Parameters
    ----------
    x_NF : numpy.ndarray
        (samples, features) per-sample feature values; only male and female samples.
    is_male : numpy.ndarray
        (samples,) bool.
    feature_block : int
        Features processed at a time (memory ~ samples x block x 16 bytes).
    """
    is_male = np.asarray(is_male, dtype=bool)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in TEST_FIELDS}
    n1, n2 = int(is_male.sum()), int((~is_male).sum())
    for f0 in range(0, x_NF.shape[1], feature_block):
        raw = np.asarray(x_NF[:, f0 : f0 + feature_block])
        male, female = raw[is_male].astype(np.float64), raw[~is_male].astype(np.float64)
        m1, m2 = male.mean(axis=0), female.mean(axis=0)
        v1, v2 = male.var(axis=0, ddof=1), female.var(axis=0, ddof=1)
        welch = welch_from_moments(m1, v1, n1, m2, v2, n2)
        mwu = rank_sum_test(raw, is_male)
        values = {
            "male_mean": m1,
            "female_mean": m2,
            "male_freq": active_fraction(male),
            "female_freq": active_fraction(female),
            "d": d_from_moments(m1, v1, n1, m2, v2, n2),
            "t": welch.t,
            "df": welch.df,
            "p_welch": welch.p,
            "u": mwu.u,
            "p_mwu": mwu.p,
        }
        for name, value in values.items():
            parts[name].append(value)
    arrays = {name: np.concatenate(v) for name, v in parts.items()}
    return FeatureTests(n_male=n1, n_female=n2, **arrays)


class BiasedFeatures(NamedTuple):
    """Indices of significant features, most biased first."""

    male: np.ndarray
    """q < alpha and d > 0, by decreasing d."""
    female: np.ndarray
    """q < alpha and d < 0, by increasing d (most female-biased first)."""


def biased_features(d: np.ndarray, q: np.ndarray, *, alpha: float, top_n: int = 0) -> BiasedFeatures:
    """Significant features split by direction and ranked by effect size; at most ``top_n`` each (0 = all)."""
    sig = q < alpha
    male = np.flatnonzero(sig & (d > 0))
    female = np.flatnonzero(sig & (d < 0))
    male = male[np.argsort(-d[male], kind="stable")]
    female = female[np.argsort(d[female], kind="stable")]
    if top_n:
        male, female = male[:top_n], female[:top_n]
    return BiasedFeatures(male, female)


@dataclass(frozen=True)
class FamilyBias:
    """Tests and permutation null of one (layer, language): one family of tests."""

    tests: FeatureTests
    q: np.ndarray
    """BH q-values within this family."""
    null: PermutationNull | None


def family_bias(x_NF: np.ndarray, is_male: np.ndarray, config: BiasConfig) -> FamilyBias:
    """Run the tests of one (layer, language) and, if configured, its label-permutation null."""
    tests = compare_groups(x_NF, is_male)
    null = None
    if config.permutations:
        null = permutation_null(
            x_NF,
            is_male,
            n_permutations=config.permutations,
            test=config.test,
            alpha=config.alpha,
            seed=config.seed,
            keep_small_p=config.correction == "global",
        )
    return FamilyBias(tests, bh_qvalues(tests.p(config.test)), null)


def reported_cis(x_NK: np.ndarray, is_male: np.ndarray, config: BiasConfig) -> BootstrapCI:
    """BCa bootstrap CIs of d for the K reported features (columns of ``x_NK``); NaN without resamples."""
    is_male = np.asarray(is_male, dtype=bool)
    if x_NK.shape[1] == 0 or config.bootstrap < 2:
        empty = np.full(x_NK.shape[1], np.nan)
        return BootstrapCI(empty, empty.copy(), np.zeros(x_NK.shape[1], dtype=np.int64))
    return bootstrap_d_ci(
        x_NK[is_male], x_NK[~is_male], n_boot=config.bootstrap, level=config.ci_level, seed=config.seed
    )


def _num(x: Any) -> float | None:
    # JSON has no NaN/inf: a missing or infinite value becomes null
    x = float(x)
    return x if np.isfinite(x) else None


def feature_records(
    indices: np.ndarray,
    tests: FeatureTests,
    q: np.ndarray,
    ci: BootstrapCI,
    test: str,
) -> list[dict[str, Any]]:
    """JSON records of ``indices`` in the shape users' scripts read (``feature``, ``male_mean``, ...).

    ``ci`` holds one interval per entry of ``indices`` (same order); ``ci_excluded`` is the number of
    resamples its bootstrap left out (:func:`~sae_store.analyze.resample.bootstrap_d_ci`).
    """
    p = tests.p(test)
    records = []
    for rank, (f, lo, hi, ex) in enumerate(zip(indices, ci.low, ci.high, ci.excluded, strict=True), start=1):
        records.append(
            {
                "feature": int(f),
                "rank": rank,
                "male_mean": _num(tests.male_mean[f]),
                "female_mean": _num(tests.female_mean[f]),
                "mean_diff": _num(tests.male_mean[f] - tests.female_mean[f]),
                "d": _num(tests.d[f]),
                "ci_low": _num(lo),
                "ci_high": _num(hi),
                "ci_excluded": int(ex),
                "p": _num(p[f]),
                "q": _num(q[f]),
                "male_freq": _num(tests.male_freq[f]),
                "female_freq": _num(tests.female_freq[f]),
                "t": _num(tests.t[f]),
                "p_welch": _num(tests.p_welch[f]),
                "u": _num(tests.u[f]),
                "p_mwu": _num(tests.p_mwu[f]),
            }
        )
    return records
