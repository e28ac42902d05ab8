"""Statistics of intervention effects: paired deltas, the male-female differential, random controls.

All functions take per-sample numpy arrays; NaN marks a sample without a value and is dropped.
Every interval of a mean is a BCa bootstrap interval
(:func:`~sae_store.analyze.resample.bca_interval`) from ``n_boot`` resamples drawn with a seeded
generator, so a result is reproducible from its seed. The p-value beside each mean tests that same
mean (a t-test); near p = 0.05 the two can disagree on which side of 0 the evidence falls, since one
resamples and the other assumes a t distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from sae_store.analyze.resample import bca_interval
from sae_store.analyze.stats import welch_ttest
from sae_store.errors import SaeStoreError

__all__ = [
    "ControlComparison",
    "Differential",
    "PairedStats",
    "compare_controls",
    "differential",
    "paired_stats",
]


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _resampled_means(x: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    return x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)


def _left_out_means(x: np.ndarray) -> np.ndarray:
    # the mean with each value left out in turn (the jackknife of BCa's acceleration)
    return (x.sum() - x) / max(x.size - 1, 1) if x.size > 1 else np.full(x.size, np.nan)


def _bca(
    estimate: float, replicates: np.ndarray, jackknife: list[np.ndarray], level: float
) -> tuple[float, float]:
    ci = bca_interval(np.array([estimate]), replicates[:, None], [j[:, None] for j in jackknife], level)
    return float(ci.low[0]), float(ci.high[0])


@dataclass(frozen=True)
class PairedStats:
    """Summary of paired per-sample deltas (after minus before)."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    """BCa bootstrap interval of ``mean``."""
    t: float
    """One-sample t statistic of ``mean`` against 0."""
    p_value: float
    """Its two-sided p-value (H0: the mean delta is 0); 1 when every delta is zero, NaN with fewer
    than two samples."""


def paired_stats(
    deltas: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedStats:
    """Mean of paired deltas with its BCa bootstrap CI and a two-sided one-sample t-test of mean 0."""
    d = _finite(deltas)
    if d.size == 0:
        nan = float("nan")
        return PairedStats(0, nan, nan, nan, nan, nan)
    rng = np.random.default_rng(seed)
    lo, hi = _bca(float(d.mean()), _resampled_means(d, rng, n_boot), [_left_out_means(d)], level)
    if d.size < 2:
        t, p = float("nan"), float("nan")
    elif np.all(d == d[0]):  # no spread: the t statistic is 0 / 0 or +-inf
        t, p = (0.0, 1.0) if d[0] == 0 else (float(np.sign(d[0]) * np.inf), 0.0)
    else:
        res = stats.ttest_1samp(d, 0.0)
        t, p = float(res.statistic), float(res.pvalue)
    return PairedStats(int(d.size), float(d.mean()), lo, hi, t, p)


@dataclass(frozen=True)
class Differential:
    """Mean effect on male-labelled samples minus mean effect on female-labelled samples."""

    value: float
    ci_low: float
    ci_high: float
    """BCa bootstrap interval of ``value`` (each gender group resampled on its own)."""
    t: float
    """Welch's t statistic of ``value``."""
    p_value: float
    """Its two-sided p-value (H0: equal mean effect on male- and female-labelled samples)."""
    male_mean: float
    female_mean: float
    n_male: int
    n_female: int


def _groups(effects: np.ndarray, genders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    effects = np.asarray(effects, dtype=np.float64)
    genders = np.asarray(genders).astype(str)
    if effects.shape != genders.shape:
        raise ValueError(f"effects {effects.shape} and genders {genders.shape} differ in shape")
    is_male, is_female = genders == "male", genders == "female"
    male, female = _finite(effects[is_male]), _finite(effects[is_female])
    if male.size == 0 or female.size == 0:
        raise SaeStoreError(
            f"the differential needs effects on both male- and female-labelled samples; got {male.size} "
            f"male and {female.size} female with a finite effect, of {int(is_male.sum())} male- and "
            f"{int(is_female.sum())} female-labelled samples. Use samples of both genders; an effect is "
            "NaN when the sample's baseline caption has no word token"
        )
    return male, female


def differential(
    effects: np.ndarray, genders: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Differential:
    """The differential ``mean(effect | male) - mean(effect | female)`` with its BCa CI and Welch test.

    The bootstrap resamples each gender group on its own (its size fixed); Welch's t-test (NaN with
    fewer than two samples in a group) tests the same difference of means.

    Raises
    ------
    SaeStoreError
        If either group has no finite effect.
    """
    male, female = _groups(effects, genders)
    rng = np.random.default_rng(seed)
    value = float(male.mean() - female.mean())
    replicates = _resampled_means(male, rng, n_boot) - _resampled_means(female, rng, n_boot)
    jackknife = [_left_out_means(male) - female.mean(), male.mean() - _left_out_means(female)]
    lo, hi = _bca(value, replicates, jackknife, level)
    nan = float("nan")
    welch = welch_ttest(male, female) if min(male.size, female.size) > 1 else None
    return Differential(
        value,
        lo,
        hi,
        float(welch.t[0]) if welch is not None else nan,
        float(welch.p[0]) if welch is not None else nan,
        float(male.mean()),
        float(female.mean()),
        male.size,
        female.size,
    )


@dataclass(frozen=True)
class ControlComparison:
    """The targeted feature set against random sets of the same size."""

    n_controls: int
    random_mean_effect: float
    """Mean over control sets of their mean per-sample effect."""
    random_differential: float
    """Mean over control sets of their differential."""
    random_differential_low: float
    """Central ``level`` interval of the control differentials (their spread, not a CI of the mean)."""
    random_differential_high: float
    magnitude_ratio: float
    """``mean |effect|`` of the targeted set over the mean across controls of their ``mean |effect|``."""
    differential_ratio: float
    """``|differential|`` of the targeted set over the mean ``|differential|`` of the controls."""
    p_random: float
    """``(1 + #controls with |differential| >= targeted) / (1 + n_controls)``."""


def compare_controls(
    effects: np.ndarray, control_effects: np.ndarray, genders: np.ndarray, *, level: float = 0.95
) -> ControlComparison:
    """Compare per-sample ``effects`` ``[n]`` of the targeted set with ``control_effects`` ``[c, n]``."""
    control_effects = np.asarray(control_effects, dtype=np.float64)
    if control_effects.ndim != 2 or control_effects.shape[0] == 0:
        raise SaeStoreError(f"need at least one control set of effects, got shape {control_effects.shape}")
    male, female = _groups(effects, genders)
    target_diff = male.mean() - female.mean()
    diffs = np.array([np.subtract(*(g.mean() for g in _groups(c, genders))) for c in control_effects])
    lo, hi = _percentile_ci(diffs, level)
    magnitudes = np.array([np.abs(_finite(c)).mean() for c in control_effects])
    random_magnitude, random_abs_diff = magnitudes.mean(), np.abs(diffs).mean()
    nan = float("nan")
    return ControlComparison(
        n_controls=int(control_effects.shape[0]),
        random_mean_effect=float(np.mean([_finite(c).mean() for c in control_effects])),
        random_differential=float(diffs.mean()),
        random_differential_low=lo,
        random_differential_high=hi,
        magnitude_ratio=float(np.abs(_finite(effects)).mean() / random_magnitude)
        if random_magnitude
        else nan,
        differential_ratio=float(abs(target_diff) / random_abs_diff) if random_abs_diff else nan,
        p_random=float((1 + np.sum(np.abs(diffs) >= abs(target_diff))) / (1 + diffs.size)),
    )
