"""The samples where selected features fire most, and where in those samples (token by token).

Shared by ``interpret`` (tokens, distributions, descriptions), ``visual`` (image-token grids) and
``qualitative``. Per-token activations are not stored, so the selected samples' residual streams
are read from the store and encoded on the fly with the layer's SAE (an injected :class:`Encoder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import xarray as xr

from sae_store.analyze.bias import biased_features
from sae_store.analyze.data import feature_matrix
from sae_store.errors import SaeStoreError
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.results import strings

#: Token vectors encoded per call (bounds the latents held at once to rows x d_sae floats).
_ENCODE_ROWS = 4096


class Encoder(Protocol):
    """An SAE's encoder: (N, d_in) activations -> (N, d_sae) feature activations."""

    def __call__(self, x_ND: np.ndarray) -> np.ndarray: ...


def select_features(
    bias: xr.Dataset, layer: int, language: str, n_per_direction: int
) -> tuple[np.ndarray, list[str]]:
    """The most male- and female-biased significant features of one (layer, language), and their direction."""
    b = bias.sel({S.LAYER: layer, S.LANGUAGE: language})
    top = biased_features(
        b["d"].values, b["q"].values, alpha=float(bias.attrs["config"]["alpha"]), top_n=n_per_direction
    )
    return np.concatenate([top.male, top.female]), ["male"] * len(top.male) + ["female"] * len(top.female)


def top_samples(values_NK: np.ndarray, valid_N: np.ndarray, k: int) -> np.ndarray:
    """(K, k') indices of the k highest values per column among valid rows (k' = min(k, valid rows))."""
    v = np.where(valid_N[:, None], values_NK, -np.inf)
    k = min(k, int(valid_N.sum()))
    return np.argsort(-v, axis=0, kind="stable")[:k].T


def encode_tokens(acts_TH: np.ndarray, encode: Encoder, features: np.ndarray) -> np.ndarray:
    """(T, K) activations of ``features`` at every token of one sample."""
    out = [
        np.asarray(encode(np.asarray(acts_TH[r0 : r0 + _ENCODE_ROWS], dtype=np.float32)))[:, features]
        for r0 in range(0, acts_TH.shape[0], _ENCODE_ROWS)
    ]
    return np.concatenate(out, axis=0).astype(np.float32)


def sample_tokens(
    store: ActivationStore,
    layer: int,
    language: str,
    sample_ids: list[str],
    encode: Encoder,
    features: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, T, K) activations of ``features`` at every token of each sample (0 on padding), and the
    samples' (n, T) token roles and token ids."""
    root = store.dataset()
    acts = root[S.ACTIVATIONS].sel({S.LAYER: layer, S.LANGUAGE: language})
    roles = np.asarray(root[S.TOKEN_ROLE].sel({S.LANGUAGE: language}).sel({S.SAMPLE: sample_ids}).values)
    input_ids = np.asarray(root[S.INPUT_IDS].sel({S.LANGUAGE: language}).sel({S.SAMPLE: sample_ids}).values)
    out = np.zeros((len(sample_ids), roles.shape[-1], len(features)), dtype=np.float32)
    for i, sample in enumerate(sample_ids):
        # padding may hold the NaN fill value; it must not reach the encoder
        x = np.nan_to_num(np.asarray(acts.sel({S.SAMPLE: sample}).values))
        out[i] = encode_tokens(x, encode, features) * (roles[i] != TokenRole.PAD)[:, None]
    return out, roles, input_ids


@dataclass(frozen=True)
class TopSamples:
    """Selected features of one (layer, language), their top samples, and token-level activations."""

    layer: int
    language: str
    features: np.ndarray
    """(K,) feature indices."""
    direction: list[str]
    """Per feature ``male``/``female`` (biased that way) or ``given`` (chosen by the user)."""
    samples: np.ndarray
    """(K, k) positions along the features group's sample axis of each feature's top samples, best first."""
    sample_ids: np.ndarray
    """(K, k) their sample ids."""
    values: np.ndarray
    """(K, k) their per-sample statistic used for ranking."""
    token_acts: np.ndarray
    """(K, k, T) the feature's activation at every token of each top sample."""
    roles: np.ndarray
    """(K, k, T) token roles (:class:`~sae_store.store.TokenRole` codes)."""
    input_ids: np.ndarray
    """(K, k, T) token ids."""


def find_top_samples(
    store: ActivationStore,
    features: xr.Dataset,
    layer: int,
    language: str,
    chosen: np.ndarray,
    direction: list[str],
    *,
    encode: Encoder,
    k: int,
    rank_by: str,
) -> TopSamples:
    """Rank samples per chosen feature and encode the top ones' tokens with the layer's SAE."""
    chosen = np.asarray(chosen, dtype=np.int64)
    n_feat = features.sizes["feature"]
    bad = [int(f) for f in chosen if not 0 <= f < n_feat]
    if bad:
        raise SaeStoreError(f"features {bad} are out of range: the SAE has features 0..{n_feat - 1}")
    flags = np.asarray(features[S.COMPLETE].sel({S.LAYER: layer, S.LANGUAGE: language}).values, dtype=bool)
    values = np.asarray(feature_matrix(features, rank_by, layer, language).isel(feature=chosen).values)
    order = top_samples(values, flags, k)
    ids = strings(features[S.SAMPLE].values)
    union = np.unique(order)
    encoded, roles, input_ids = sample_tokens(store, layer, language, list(ids[union]), encode, chosen)
    where = {int(s): i for i, s in enumerate(union)}
    K, kk = order.shape
    token_acts = np.zeros((K, kk, roles.shape[-1]), dtype=np.float32)
    for i in range(K):
        for j in range(kk):
            token_acts[i, j] = encoded[where[int(order[i, j])], :, i]
    pick = np.vectorize(where.__getitem__, otypes=[np.int64])(order) if order.size else order
    return TopSamples(
        layer=layer,
        language=language,
        features=chosen,
        direction=list(direction),
        samples=order,
        sample_ids=ids[order] if order.size else np.zeros(order.shape, dtype=object),
        values=np.take_along_axis(values.T, order, axis=1) if order.size else np.zeros(order.shape),
        token_acts=token_acts,
        roles=roles[pick],
        input_ids=input_ids[pick],
    )


def chosen_features(
    bias: xr.Dataset | None, layer: int, language: str, given: Sequence[int] | None, n_per_direction: int
) -> tuple[np.ndarray, list[str]]:
    """The user's features, or else the top biased ones from the bias results."""
    if given is not None:
        return np.asarray(list(given), dtype=np.int64), ["given"] * len(given)
    if bias is None:
        raise SaeStoreError(
            "no features given and no bias results to pick them from; pass --features or run "
            "`sae-store analyze bias` first"
        )
    return select_features(bias, layer, language, n_per_direction)
