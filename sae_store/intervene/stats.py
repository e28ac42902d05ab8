"""Statistics of intervention effects: paired deltas, the male-female differential, random controls.

All functions take per-sample numpy arrays; NaN marks a sample without a value and is dropped.
Bootstrap intervals are percentile intervals of the mean from ``n_boot`` resamples drawn with a
seeded generator, so a result is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

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


@dataclass(frozen=True)
class PairedStats:
    """Summary of paired per-sample deltas (after minus before)."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    wilcoxon_statistic: float
    """Two-sided Wilcoxon signed-rank statistic (scipy's, zero deltas dropped)."""
    p_value: float
    """Its p-value; 1 when every delta is zero, NaN without samples."""


def paired_stats(
    deltas: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedStats:
    """Mean of paired deltas with a bootstrap CI and a two-sided Wilcoxon signed-rank test."""
    d = _finite(deltas)
    if d.size == 0:
        nan = float("nan")
        return PairedStats(0, nan, nan, nan, nan, nan)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = _percentile_ci(boots, level)
    if np.all(d == 0):
        statistic, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(d)
        statistic, p = float(res.statistic), float(res.pvalue)
    return PairedStats(int(d.size), float(d.mean()), lo, hi, statistic, p)


@dataclass(frozen=True)
class Differential:
    """Mean effect on male-labelled samples minus mean effect on female-labelled samples."""

    value: float
    ci_low: float
    ci_high: float
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
    """The differential ``mean(effect | male) - mean(effect | female)`` with a bootstrap CI.

    The bootstrap resamples each gender group on its own (its size fixed).

    Raises
    ------
    SaeStoreError
        If either group has no finite effect.
    """
    male, female = _groups(effects, genders)
    rng = np.random.default_rng(seed)
    boot_m = male[rng.integers(0, male.size, size=(n_boot, male.size))].mean(axis=1)
    boot_f = female[rng.integers(0, female.size, size=(n_boot, female.size))].mean(axis=1)
    lo, hi = _percentile_ci(boot_m - boot_f, level)
    return Differential(
        float(male.mean() - female.mean()),
        lo,
        hi,
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
