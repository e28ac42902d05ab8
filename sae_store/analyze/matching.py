"""Matching SAE features by decoder direction: across separately trained SAEs and across layers.

Decoder rows ``W_dec`` [d_sae, d_in] are the directions features write into the residual stream;
two features are "the same" when their rows point the same way (cosine similarity). Residual
streams of different layers share one basis, so the same measure links a feature to its
counterpart one layer later (lineage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from sae_store.errors import SaeStoreError

#: Up to this many features, the assignment is solved on the dense cosine matrix (exact).
DENSE_LIMIT = 4096
_ROW_BLOCK = 2048


def _unit_rows(W: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(W, dtype=np.float32))
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _check_widths(W_a: np.ndarray, W_b: np.ndarray) -> None:
    if W_a.ndim != 2 or W_b.ndim != 2 or W_a.shape[1] != W_b.shape[1]:
        raise SaeStoreError(
            f"decoders must be [d_sae, d_in] with the same d_in; got shapes {W_a.shape} and {W_b.shape}"
        )


def top_cosines(W_a: np.ndarray, W_b: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``W_a``, the ``m`` rows of ``W_b`` with the highest cosine: (indices, cosines)."""
    _check_widths(W_a, W_b)
    a, b = _unit_rows(W_a), _unit_rows(W_b)
    m = min(m, b.shape[0])
    idx, cos = [], []
    with torch.no_grad():
        for r0 in range(0, a.shape[0], _ROW_BLOCK):
            top = (a[r0 : r0 + _ROW_BLOCK] @ b.T).topk(m, dim=1)
            idx.append(top.indices.numpy())
            cos.append(top.values.numpy())
    return np.concatenate(idx), np.concatenate(cos).astype(np.float64)


@dataclass(frozen=True)
class Matching:
    """One-to-one matching of features of SAE a to features of SAE b."""

    index: np.ndarray
    """(d_sae_a,) matched feature of b for each feature of a; -1 if unmatched (when b is smaller)."""
    cosine: np.ndarray
    """(d_sae_a,) decoder cosine of each matched pair (NaN if unmatched)."""
    exact: bool
    """True if solved on the full cosine matrix; False if on each row's top candidates."""
    chance_cosine: float
    """sqrt(2 ln n_b / d_in): about the best cosine a random direction reaches among n_b random ones."""

    def quality(self) -> dict[str, Any]:
        """Summary of the match quality, with the level random directions would reach."""
        c = self.cosine[np.isfinite(self.cosine)]
        return {
            "matched": int(c.size),
            "mean_cosine": float(c.mean()) if c.size else None,
            "median_cosine": float(np.median(c)) if c.size else None,
            "fraction_above_0.5": float((c > 0.5).mean()) if c.size else None,
            "fraction_above_0.7": float((c > 0.7).mean()) if c.size else None,
            "fraction_above_0.9": float((c > 0.9).mean()) if c.size else None,
            "chance_cosine": self.chance_cosine,
            "exact_assignment": self.exact,
        }


def match_features(W_dec_a: np.ndarray, W_dec_b: np.ndarray, *, candidates: int = 32) -> Matching:
    """Hungarian (maximum total cosine) one-to-one matching of the decoder rows of two SAEs.

    Up to :data:`DENSE_LIMIT` features the full cosine matrix is assigned exactly
    (:func:`scipy.optimize.linear_sum_assignment`). Above it, a dense 20k x 20k assignment is too slow,
    so each row keeps its ``candidates`` best partners and the sparse assignment
    (:func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching`) is solved on that graph,
    doubling ``candidates`` until a full matching exists; pairs outside every row's top candidates
    are never good matches anyway.
    """
    _check_widths(W_dec_a, W_dec_b)
    n_a, n_b = W_dec_a.shape[0], W_dec_b.shape[0]
    index = np.full(n_a, -1, dtype=np.int64)
    cosine = np.full(n_a, np.nan)
    chance = float(np.sqrt(2 * np.log(max(n_b, 2)) / W_dec_a.shape[1]))
    if max(n_a, n_b) <= DENSE_LIMIT:
        cos = (_unit_rows(W_dec_a) @ _unit_rows(W_dec_b).T).numpy().astype(np.float64)
        rows, cols = linear_sum_assignment(cos, maximize=True)
        index[rows], cosine[rows] = cols, cos[rows, cols]
        return Matching(index, cosine, exact=True, chance_cosine=chance)
    m = candidates
    while True:
        idx, cos = top_cosines(W_dec_a, W_dec_b, m)
        # costs must be > 0 (zeros are missing edges): 2 - cos lies in [1, 3]
        graph = sparse.csr_matrix(
            (2.0 - cos.ravel(), idx.ravel(), np.arange(0, idx.size + 1, idx.shape[1])), shape=(n_a, n_b)
        )
        try:
            rows, cols = min_weight_full_bipartite_matching(graph)
        except ValueError:
            if m >= n_b:
                raise
            m = min(2 * m, n_b)
            continue
        index[rows] = cols
        cosine[rows] = 2.0 - np.asarray(graph[rows, cols]).ravel()
        return Matching(index, cosine, exact=m >= n_b, chance_cosine=chance)


class Lineage(NamedTuple):
    """Best decoder match in the next layer of selected features."""

    feature: np.ndarray
    """(K,) features of layer L."""
    next_feature: np.ndarray
    """(K,) their most similar feature of layer L+1."""
    cosine: np.ndarray
    """(K,) the decoder cosine of that pair."""


def lineage(W_dec: np.ndarray, W_dec_next: np.ndarray, features: np.ndarray) -> Lineage:
    """For each of ``features`` of one layer's SAE, its nearest decoder direction in the next layer's SAE."""
    features = np.asarray(features, dtype=np.int64)
    if features.size == 0:
        return Lineage(features, features.copy(), np.zeros(0))
    idx, cos = top_cosines(np.asarray(W_dec)[features], W_dec_next, 1)
    return Lineage(features, idx[:, 0].astype(np.int64), cos[:, 0])
