"""Stratified, deterministic subsampling of the samples table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def allocate_proportional(available: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` draws across strata in proportion to their sizes (largest-remainder rounding).

    Every stratum gets the floor of its exact share ``n * size / total``; the draws left over go
    one each to the strata with the largest fractional remainders (ties: larger stratum first,
    then the order of ``available``). The result sums to ``n``, every share is within 1 of the
    exact proportion, and no stratum gets more than it has.

    Parameters
    ----------
    available : mapping of str to int
        Size of each stratum (non-negative).
    n : int
        Number of draws, ``0 <= n <= sum(available.values())``.

    Returns
    -------
    dict of str to int
        Draws per stratum, in the order of ``available``.

    Raises
    ------
    ValueError
        If ``n`` or a size is negative, or ``n`` exceeds the total.
    """
    total = sum(available.values())
    if n < 0 or any(v < 0 for v in available.values()):
        raise ValueError(f"Sizes and n must be non-negative, got n={n} and sizes {dict(available)}.")
    if n > total:
        raise ValueError(f"Cannot draw n={n} from strata holding {total} in all.")
    if total == 0:
        return dict.fromkeys(available, 0)
    # Integer arithmetic: floor and remainder of n * size / total are exact.
    floors = {k: n * v // total for k, v in available.items()}
    remainders = {k: n * v % total for k, v in available.items()}
    left = n - sum(floors.values())
    order = list(available)
    ranked = sorted(order, key=lambda k: (-remainders[k], -available[k], order.index(k)))
    for k in ranked[:left]:
        floors[k] += 1
    return floors


def stratified_indices(labels: Sequence[str], n: int, seed: int) -> np.ndarray:
    """Choose ``n`` positions of ``labels``, stratified by label, reproducibly.

    Parameters
    ----------
    labels : sequence of str
        The stratum of each item.
    n : int
        How many to choose (at most ``len(labels)``).
    seed : int
        Non-negative seed; the same labels, ``n`` and seed always give the same choice.

    Returns
    -------
    numpy.ndarray
        Sorted positions (int64) of the chosen items.
    """
    labels_arr = np.asarray(labels, dtype=object)
    strata = sorted(set(labels_arr.tolist()))
    available = {s: int((labels_arr == s).sum()) for s in strata}
    shares = allocate_proportional(available, n)
    chosen: list[np.ndarray] = []
    for stratum in strata:
        positions = np.flatnonzero(labels_arr == stratum)
        # One generator per stratum, seeded by its name: a stratum's choice does not depend on
        # which other strata take part.
        rng = np.random.default_rng([seed, *stratum.encode()])
        chosen.append(rng.choice(positions, size=shares[stratum], replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
