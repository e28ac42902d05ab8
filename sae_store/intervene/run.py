"""``sae-store intervene`` on a store: the SAE and feature set of one layer, the experiment, its outputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from sae_store.analyze.bias import biased_features
from sae_store.analyze.results import read_analysis
from sae_store.errors import ConfigError, SaeStoreError
from sae_store.intervene.config import InterventionConfig
from sae_store.intervene.experiment import run_intervention
from sae_store.intervene.features import parse_feature_spec, resolve_features
from sae_store.intervene.generation import experiment_samples, read_generation
from sae_store.intervene.hooks import SAELike, check_sae
from sae_store.intervene.results import result_key, summarise, to_dataset, write_cross_layer, write_result
from sae_store.models.config import ModelRunConfig
from sae_store.models.loader import LoadedModel
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.train.discovery import find_saes
from sae_store.train.folder import has_sae
from sae_store.train.formats import load_sae

__all__ = ["LayerSae", "bias_ranking", "intervene_store", "load_layer_sae", "load_store_model"]

log = logging.getLogger(__name__)


class LayerSae(NamedTuple):
    """An SAE loaded for one layer, with the layer its folder records (None if it records none)."""

    sae: SAELike
    recorded_layer: int | None
    path: Path
    cfg: dict[str, Any]


def load_store_model(store: ActivationStore, model: str | Path | None, config: ModelRunConfig) -> LoadedModel:
    """Load ``model`` (default: the folder the store records) and check it is the store's model."""
    from sae_store.extract.model_info import check_identity
    from sae_store.models.loader import load_model

    folder = model or store.model_folder
    if not folder:
        raise ConfigError("the store records no model folder; pass --model DIR")
    loaded = load_model(folder, device=config.device, dtype=config.dtype)
    check_identity(store, loaded.identity)
    return loaded


def load_layer_sae(saes: str | Path, layer: int, *, device: torch.device | str = "cpu") -> LayerSae:
    """The SAE of ``layer``: ``saes`` itself when it is one SAE folder, else the layer's SAE in a
    folder of per-layer SAEs or a ``{L}`` pattern (any layout :func:`~sae_store.train.find_saes` reads).

    The layer recorded in its ``cfg.json`` (``hook_layer``) is returned for :func:`check_sae`.
    """
    folder = Path(saes)
    if not has_sae(folder):
        folder = find_saes(saes, [layer])[layer]
    loaded = load_sae(folder, device=str(device))
    cfg = loaded.cfg
    recorded = cfg.get("hook_layer", cfg.get("sae_store", {}).get("layer"))
    sae = loaded.sae.eval().requires_grad_(False)
    return LayerSae(sae, None if recorded is None else int(recorded), folder, cfg)


def bias_ranking(store: ActivationStore, layer: int, language: str | None = None) -> dict[str, list[int]]:
    """The layer's significant male- and female-biased features, strongest first (``analyze bias``).

    ``language`` defaults to the bias analysis' primary (first) language, the one its JSON lists
    under ``results["layers"]``.
    """
    ds = read_analysis(store, "bias")
    if layer not in ds[S.LAYER].values:
        raise SaeStoreError(f"the bias analysis has no layer {layer}; it holds {ds[S.LAYER].values.tolist()}")
    languages = [str(v) for v in ds[S.LANGUAGE].values]
    language = language or languages[0]
    if language not in languages:
        raise SaeStoreError(f"the bias analysis has no language {language!r}; it holds {languages}")
    row = ds.sel({S.LAYER: layer, S.LANGUAGE: language})
    ranked = biased_features(
        np.asarray(row["d"]), np.asarray(row["q"]), alpha=float(ds.attrs["config"]["alpha"])
    )
    return {"male": ranked.male.tolist(), "female": ranked.female.tolist()}


@dataclass(frozen=True)
class InterventionOutcome:
    """Where one layer's experiment went."""

    key: str
    group: str
    json_path: Path
    cross_layer_path: Path
    summary: dict[str, Any]


def intervene_store(
    store: ActivationStore,
    loaded: LoadedModel,
    layer_sae: LayerSae,
    *,
    layer: int,
    config: InterventionConfig,
    out_dir: str | Path,
    languages: Sequence[str] | None = None,
    key: str | None = None,
    images_dir: str | Path | None = None,
    progress: bool = True,
) -> InterventionOutcome:
    """Run one experiment at ``layer`` on the store's captioned samples and write its results.

    The features are ``config.features`` (a :func:`~sae_store.intervene.features.parse_feature_spec`
    set); ``config.max_new_tokens`` of the regenerated captions defaults to the stored captions'
    setting, so baseline and edited captions are compared at the same length.
    """
    spec = parse_feature_spec(config.features)
    if not 0 <= layer < loaded.adapter.n_layers:
        raise SaeStoreError(
            f"layer {layer} does not exist: the model has layers 0..{loaded.adapter.n_layers - 1}"
        )
    languages = list(store.layout.languages if languages is None else languages)
    gen = read_generation(store, require_complete=False)
    stored_len = int(gen.attrs["generation"]["max_new_tokens"])
    config = replace(config, max_new_tokens=config.max_new_tokens or stored_len)
    check_sae(layer_sae.sae, layer=layer, d_in=loaded.adapter.hidden_size, sae_layer=layer_sae.recorded_layer)
    ranked = bias_ranking(store, layer, config.rank_language) if spec.kind != "list" else None
    features = resolve_features(spec, ranked, layer_sae.sae.d_sae)
    index, samples = experiment_samples(
        store, languages, images_dir=images_dir, max_samples=config.max_samples
    )
    log.info(
        "layer %d: %s of %d features on %d samples x %d languages",
        layer,
        config.mode,
        len(features),
        index.size,
        len(languages),
    )
    result = run_intervention(
        loaded,
        layer_sae.sae,
        layer,
        features,
        samples,
        config,
        progress=progress,
        sae_layer=layer_sae.recorded_layer,
    )
    genders = samples[0].genders
    baseline = {
        lang: (
            gen["male_terms"].values[store.language_index(lang), index].astype(float),
            gen["female_terms"].values[store.language_index(lang), index].astype(float),
        )
        for lang in languages
    }
    summary = summarise(result, genders, baseline, n_boot=config.bootstrap)
    summary.update(features_spec=str(spec), sae=str(layer_sae.path), model=loaded.identity)
    key = key or result_key(spec.label, config.mode)
    sample_ids = np.asarray(gen[S.SAMPLE].values)[index]
    group, path = write_result(store, out_dir, key, to_dataset(result, sample_ids, genders, summary), summary)
    return InterventionOutcome(key, group, path, write_cross_layer(out_dir), summary)
