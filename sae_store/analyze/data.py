"""Reading what the analyses need from a store: the ``features`` group, labels, and checks on both.

These are the thin xarray wrappers' inputs: lazy (dask-backed) feature matrices per (layer,
language), the male/female selection with its exclusion counts, and refusals with a fix when a
step has not been run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from sae_store.analyze.config import STATISTIC_VARIABLES
from sae_store.errors import IncompleteError, SaeStoreError
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, open_store
from sae_store.store import schema as S
from sae_store.store.results import Labels, has_group, read_group, read_labels, strings

GENDERS = ("male", "female")


def open_features(store: ActivationStore, group: str = S.FEATURES) -> xr.Dataset:
    """The store's features group as a lazy Dataset; refused (with what to run) if it is not there."""
    if not has_group(store, group):
        raise IncompleteError(
            f"the store {str(store.path)!r} has no {group!r} group: no SAE features are encoded yet; "
            f"run `sae-store encode {store.path} --saes SAE_DIR` first"
        )
    return read_group(store, group)


class Inputs(NamedTuple):
    """What every analysis reads: an opened store, its features group (lazy) and its labels."""

    store: ActivationStore
    features: xr.Dataset
    labels: Labels


def open_inputs(store_path: str | Path, features_group: str = S.FEATURES) -> Inputs:
    """Open a store, its features group (refused with what to run if missing) and its labels."""
    store = open_store(store_path)
    return Inputs(store, open_features(store, features_group), read_labels(store))


def feature_matrix(features: xr.Dataset, statistic: str, layer: int, language: str) -> xr.DataArray:
    """Lazy (sample, feature) matrix of one per-sample statistic of one layer and language."""
    name = STATISTIC_VARIABLES[statistic]
    if name not in features:
        raise IncompleteError(
            f"the features group has no {name!r} (statistic {statistic!r}); it holds "
            f"{sorted(map(str, features.data_vars))}; re-run `sae-store encode` with that statistic or "
            "choose another"
        )
    return features[name].sel({S.LAYER: layer, S.LANGUAGE: language})


@dataclass(frozen=True)
class Selection:
    """The male and female samples of one (layer, language) that have encoded features."""

    layer: int
    language: str
    index: np.ndarray
    """Positions along the features group's ``sample`` axis, in increasing order."""
    is_male: np.ndarray
    """(len(index),) bool."""
    excluded: dict[str, int]
    """Samples left out and why: ``unknown``, ``ambiguous`` (labels), ``not_encoded`` (no features)."""

    @property
    def n_male(self) -> int:
        return int(self.is_male.sum())

    @property
    def n_female(self) -> int:
        return int((~self.is_male).sum())

    def counts(self) -> dict[str, Any]:
        return {"n_male": self.n_male, "n_female": self.n_female, "excluded": dict(self.excluded)}


def encoded_flags(features: xr.Dataset, layer: int, language: str, store: ActivationStore) -> np.ndarray:
    """Completion flags of one (layer, language) of the features group; refused if nothing is encoded."""
    layers = [int(v) for v in features[S.LAYER].values]
    if layer not in layers:
        raise IncompleteError(
            f"layer {layer!r} has no encoded features (the features group holds layers {layers}); "
            f"run `sae-store encode {store.path} --saes SAE_DIR --layer {layer}` first"
        )
    flags = np.asarray(features[S.COMPLETE].sel({S.LAYER: layer, S.LANGUAGE: language}).values, dtype=bool)
    if not flags.any():
        raise IncompleteError(
            f"layer {layer!r} ({language}) has no encoded features yet; "
            f"run `sae-store encode {store.path} --saes SAE_DIR --layer {layer}` first"
        )
    return flags


def select_samples(
    features: xr.Dataset,
    labels: Labels,
    store: ActivationStore,
    layer: int,
    language: str,
    *,
    min_per_group: int,
    allow_incomplete: bool = False,
) -> Selection:
    """Male and female samples of one (layer, language) with encoded features, and what was left out.

    Raises
    ------
    IncompleteError
        No features for this layer, or (unless ``allow_incomplete``) some labelled samples lack them.
    SaeStoreError
        Fewer than ``min_per_group`` male or female samples.
    """
    flags = encoded_flags(features, layer, language, store)
    gender = aligned_gender(features, labels)
    gendered = np.isin(gender, GENDERS)
    missing = int((gendered & ~flags).sum())
    if missing and not allow_incomplete:
        raise IncompleteError(
            f"layer {layer} ({language}): features of {missing} of {int(gendered.sum())} male/female samples "
            f"are not encoded yet; run `sae-store encode {store.path} --saes SAE_DIR --layer {layer}` "
            f"(it resumes), or pass --allow-incomplete to analyse the {int((gendered & flags).sum())} "
            "encoded ones"
        )
    index = np.flatnonzero(gendered & flags)
    is_male = gender[index] == "male"
    other = Counter(str(g) for g in gender[~gendered])
    excluded = {
        "unknown": other.pop("unknown", 0),
        "ambiguous": other.pop("ambiguous", 0),
        "not_encoded": missing,
    }
    if other:
        excluded["other_label"] = sum(other.values())
    selection = Selection(layer, language, index, is_male, excluded)
    if selection.n_male < min_per_group or selection.n_female < min_per_group:
        raise SaeStoreError(
            f"layer {layer} ({language}) has {selection.n_male} male and {selection.n_female} female samples "
            f"with encoded features (excluded: {excluded}); the tests need at least {min_per_group} of each: "
            "add samples with `sae-store append`, or lower --min-per-group (at least 9)"
        )
    return selection


def aligned_gender(features: xr.Dataset, labels: Labels) -> np.ndarray:
    """Gender of each sample of the features group (matched by sample id, not by position)."""
    ids = strings(features[S.SAMPLE].values)
    if ids.shape == labels.sample.shape and (ids == labels.sample).all():
        return labels.gender
    where = {s: i for i, s in enumerate(labels.sample)}
    unknown = [s for s in ids if s not in where]
    if unknown:
        raise SaeStoreError(
            f"the features group has samples the store does not know, e.g. {unknown[:3]!r}; "
            "re-run `sae-store encode` on this store"
        )
    return labels.gender[[where[s] for s in ids]]


def check_d_in(d_in: int, store: ActivationStore, what: str) -> None:
    """Refuse an SAE whose input width differs from the store's hidden size."""
    hidden = store.layout.hidden_size
    if d_in != hidden:
        raise SaeStoreError(
            f"{what} has d_in={d_in} but the store's activations have hidden size {hidden}; "
            "use SAEs trained on this model's residual stream"
        )


def choose(
    features: xr.Dataset, layers: Sequence[int] | None, languages: Sequence[str] | None
) -> tuple[list[int], list[str]]:
    """The layers and languages to analyse: the given ones (checked against the features group) or all."""
    have_layers = [int(v) for v in features[S.LAYER].values]
    have_languages = [str(v) for v in features[S.LANGUAGE].values]

    def pick(what: str, given: Sequence[Any] | None, have: list[Any]) -> list[Any]:
        if given is None:
            return list(have)
        bad = [v for v in given if v not in have]
        if bad:
            raise SaeStoreError(f"{what} {bad} are not in the features group; it holds {have}")
        return list(given)

    return [int(v) for v in pick("layers", layers, have_layers)], [
        str(v) for v in pick("languages", languages, have_languages)
    ]


def sae_identities(features: xr.Dataset, layer: int, languages: Sequence[str]) -> dict[str, str] | None:
    """Which SAE encoded each language of ``layer``, from the features group's ``saes`` provenance.

    ``attrs["saes"][str(layer)]`` describes one SAE (``sha256``/``folder``...) shared by all languages,
    or maps each language to its own. Returns None when the provenance is absent.
    """
    saes = features.attrs.get("saes")
    if not isinstance(saes, dict):
        return None
    entry = saes.get(str(layer), saes.get(layer))
    if not isinstance(entry, dict):
        return None

    def ident(e: Any) -> str:
        if isinstance(e, dict):
            return str(e.get("sha256") or e.get("folder") or json.dumps(e, sort_keys=True))
        return str(e)

    if all(lang in entry for lang in languages):
        return {lang: ident(entry[lang]) for lang in languages}
    return {lang: ident(entry) for lang in languages}


def pooled_activations(
    store: ActivationStore, layer: int, language: str, sample_ids: np.ndarray, roles: Sequence[str]
) -> xr.DataArray:
    """Lazy (sample, hidden) residual stream of ``sample_ids`` averaged over the tokens of ``roles``.

    Raises
    ------
    IncompleteError
        Some of these samples' activations are not extracted.
    """
    root = store.dataset()
    where = {"layer": layer, "language": language}
    done = np.asarray(root[S.COMPLETE].sel(where).sel({S.SAMPLE: list(sample_ids)}).values, dtype=bool)
    if not done.all():
        raise IncompleteError(
            f"layer {layer} ({language}): activations of {int((~done).sum())} samples are not extracted; "
            f"run `sae-store extract` for them first (see `sae-store status {store.path}`)"
        )
    codes = [int(TokenRole[r.upper()]) for r in roles]
    mask = root[S.TOKEN_ROLE].sel(language=language).isin(codes)
    acts = root[S.ACTIVATIONS].sel(where).where(mask)
    return acts.sel({S.SAMPLE: list(sample_ids)}).mean(S.TOKEN)
