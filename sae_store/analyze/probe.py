"""Linear probes: how much of a binary label (gender, language) a layer's representation carries,
from all of its dimensions or, as in SAEBench's sparse probing, from the k whose class means differ most."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class ProbeResult(NamedTuple):
    """Out-of-fold accuracy of a cross-validated logistic-regression probe."""

    accuracy: float
    """Fraction of samples whose held-out prediction is right (pooled over folds)."""
    ci_low: float
    ci_high: float
    """Wilson 95 % interval of ``accuracy``."""
    balanced_accuracy: float
    """Mean of the per-class recalls (0.5 = chance, whatever the class balance)."""
    chance_accuracy: float
    """Share of the larger gender among the probed samples: the accuracy of always predicting it (0.5 for
    a balanced set), the level an uninformative probe reaches."""
    n_samples: int
    n_features: int
    folds: int

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def _wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def top_k_by_mean_difference(x_NF: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` columns of ``x_NF`` whose class means differ most, |mean(y) - mean(~y)|
    (SAEBench's sparse-probing selection), largest first."""
    diff = np.abs(x_NF[y].mean(axis=0) - x_NF[~y].mean(axis=0))
    return np.argsort(-diff, kind="stable")[:k]


def gender_probe(
    x_NF: np.ndarray,
    is_male: np.ndarray,
    *,
    folds: int,
    C: float,
    seed: int,
    top_k: int | None = None,
    groups: np.ndarray | None = None,
) -> ProbeResult:
    """Cross-validated L2 logistic regression predicting a binary label (gender) from per-sample features.

    Features are standardised inside each training fold (no leakage); folds are stratified.

    Parameters
    ----------
    x_NF : numpy.ndarray
        (samples, features): per-sample SAE features or mean-pooled activations.
    is_male : numpy.ndarray
        (samples,) bool labels (any binary label: True is one class).
    folds, C, seed
        Number of folds, inverse regularisation strength and fold seed.
    top_k
        Use only the ``top_k`` features whose class means differ most, chosen on each training fold
        (:func:`top_k_by_mean_difference`); None uses every feature.
    groups
        (samples,) group of each row: rows of one group (one image in several languages) stay in
        one fold.
    """
    y = np.asarray(is_male, dtype=bool)
    x = np.asarray(x_NF, dtype=np.float64)
    predicted = np.zeros_like(y)
    if groups is None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
    else:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups)
    for train, test in splits:
        cols = slice(None) if top_k is None else top_k_by_mean_difference(x[train], y[train], top_k)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(x[train][:, cols], y[train])
        predicted[test] = model.predict(x[test][:, cols])
    # Chance is the larger class's share of all samples. Guessing the training folds' majority out of
    # fold is no baseline: in a balanced set each training fold's majority is the test fold's minority,
    # so it scores below 0.5 (0.45 on 22 + 22 samples in 5 folds).
    right = int((predicted == y).sum())
    low, high = _wilson(right, y.size)
    recalls = [float((predicted[y == c] == c).mean()) for c in (True, False)]
    return ProbeResult(
        accuracy=right / y.size,
        ci_low=low,
        ci_high=high,
        balanced_accuracy=float(np.mean(recalls)),
        chance_accuracy=float(max(y.mean(), 1.0 - y.mean())),
        n_samples=int(y.size),
        n_features=int(x.shape[1] if top_k is None else min(top_k, x.shape[1])),
        folds=folds,
    )
