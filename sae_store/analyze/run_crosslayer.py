"""``analyze crosslayer`` on a store: bias per layer, gender probes, and feature lineage."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from dask import delayed
from distributed import Client

from sae_store.analyze.bias import biased_features
from sae_store.analyze.cluster import compute_tasks
from sae_store.analyze.config import CrossLayerConfig
from sae_store.analyze.data import Inputs, choose, feature_matrix, pooled_activations, select_samples
from sae_store.analyze.matching import lineage
from sae_store.analyze.probe import ProbeResult, gender_probe
from sae_store.analyze.results import AnalysisRun
from sae_store.errors import IncompleteError
from sae_store.store import schema as S
from sae_store.store.results import strings


def abs_interval(low: float, high: float) -> list[float]:
    """The interval of |d| implied by an interval [low, high] of d (NaN stays NaN)."""
    if low > 0:
        return [low, high]
    if high < 0:
        return [-high, -low]
    return [0.0, max(-low, high)] if np.isfinite(low) and np.isfinite(high) else [low, high]


def probe_layer(
    x_sae: np.ndarray, x_raw: np.ndarray | None, is_male: np.ndarray, config: CrossLayerConfig
) -> dict[str, ProbeResult | None]:
    """Gender probes of one (layer, language) on SAE features and, if given, raw pooled activations."""
    kwargs = {"folds": config.folds, "C": config.C, "seed": config.seed}
    return {
        "sae": gender_probe(x_sae, is_male, **kwargs),  # type: ignore[arg-type]
        "raw": gender_probe(x_raw, is_male, **kwargs) if x_raw is not None else None,  # type: ignore[arg-type]
    }


def run_crosslayer(
    inp: Inputs,
    bias: xr.Dataset,
    config: CrossLayerConfig,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    decoders: dict[int, np.ndarray] | None = None,
    client: Client | None = None,
) -> AnalysisRun:
    """Summarise gender bias across layers.

    Parameters
    ----------
    bias
        The stored bias results (``analysis/bias``): significant counts, max |d|, biased features.
    decoders
        ``W_dec`` [d_sae, d_in] per layer, for the lineage of top biased features into the next
        analysed layer (shared SAEs; omitted layers get no lineage).
    """
    store, features, labels = inp
    layers, languages = choose(features, layers, languages)
    layers = sorted(layers)
    missing = [
        (la, lg)
        for la in layers
        for lg in languages
        if la not in bias[S.LAYER].values or lg not in strings(bias[S.LANGUAGE].values)
    ]
    if missing:
        raise IncompleteError(
            f"the bias results lack (layer, language) {missing}; run `sae-store analyze bias` for them first"
        )
    alpha = float(bias.attrs["config"]["alpha"])
    keys = [(la, lg) for la in layers for lg in languages]
    tasks = []
    for layer, lang in keys:
        sel = select_samples(features, labels, store, layer, lang, min_per_group=config.min_per_group)
        x_sae = feature_matrix(features, config.statistic, layer, lang).isel({S.SAMPLE: sel.index}).data
        ids = strings(features[S.SAMPLE].values)[sel.index]
        x_raw = pooled_activations(store, layer, lang, ids, config.roles).data if config.raw_probe else None
        tasks.append(delayed(probe_layer)(x_sae, x_raw, sel.is_male, config))
    probes = dict(zip(keys, compute_tasks(tasks, client, desc="gender probes"), strict=True))
    out_layers: dict[str, Any] = {}
    for layer, lang in keys:
        b = bias.sel({S.LAYER: layer, S.LANGUAGE: lang})
        d, q = b["d"].values, b["q"].values
        finite = np.where(np.isfinite(d), np.abs(d), -1.0)
        top = int(np.argmax(finite))
        entry: dict[str, Any] = {
            "n_significant": int((q < alpha).sum()),
            "max_abs_d": float(finite[top]),
            "max_abs_d_feature": top,
            "max_abs_d_ci": abs_interval(float(b["ci_low"].values[top]), float(b["ci_high"].values[top])),
            "probe_sae": probes[(layer, lang)]["sae"]._asdict(),
            "probe_raw": p._asdict() if (p := probes[(layer, lang)]["raw"]) is not None else None,
        }
        out_layers.setdefault(str(layer), {})[lang] = entry
    chains = _lineage(bias, layers, languages, decoders or {}, alpha, config) if decoders else {}
    for key, chain in chains.items():
        out_layers[key[0]][key[1]]["lineage"] = chain
    payload = {
        "analysis": "crosslayer",
        "config": config.to_dict(),
        "languages": languages,
        "layers": out_layers,
    }
    return AnalysisRun(_to_dataset(layers, languages, out_layers, config), payload)


def _lineage(
    bias: xr.Dataset,
    layers: list[int],
    languages: list[str],
    decoders: dict[int, np.ndarray],
    alpha: float,
    config: CrossLayerConfig,
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each top biased feature's nearest decoder direction in the next analysed layer, and its bias there."""
    with_sae = [la for la in layers if la in decoders]
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for layer, nxt in itertools.pairwise(with_sae):
        for lang in languages:
            here = bias.sel({S.LAYER: layer, S.LANGUAGE: lang})
            there = bias.sel({S.LAYER: nxt, S.LANGUAGE: lang})
            top = biased_features(here["d"].values, here["q"].values, alpha=alpha, top_n=config.lineage_top)
            feats = np.concatenate([top.male, top.female])
            link = lineage(decoders[layer], decoders[nxt], feats)
            out[(str(layer), lang)] = [
                {
                    "feature": int(f),
                    "d": float(here["d"].values[f]),
                    "next_layer": nxt,
                    "next_feature": int(g),
                    "cosine": float(c),
                    "next_d": float(there["d"].values[g]),
                    "next_q": float(there["q"].values[g]),
                    "next_same_direction_significant": bool(
                        there["q"].values[g] < alpha
                        and np.sign(there["d"].values[g]) == np.sign(here["d"].values[f])
                    ),
                }
                for f, g, c in zip(link.feature, link.next_feature, link.cosine, strict=True)
            ]
    return out


def _to_dataset(
    layers: list[int], languages: list[str], out_layers: dict[str, Any], config: CrossLayerConfig
) -> xr.Dataset:
    names = {
        "n_significant": lambda e: e["n_significant"],
        "max_abs_d": lambda e: e["max_abs_d"],
        "probe_sae_accuracy": lambda e: e["probe_sae"]["accuracy"],
        "probe_sae_ci_low": lambda e: e["probe_sae"]["ci_low"],
        "probe_sae_ci_high": lambda e: e["probe_sae"]["ci_high"],
        "probe_sae_balanced_accuracy": lambda e: e["probe_sae"]["balanced_accuracy"],
        "probe_chance_accuracy": lambda e: e["probe_sae"]["chance_accuracy"],
        "probe_raw_accuracy": lambda e: e["probe_raw"]["accuracy"] if e["probe_raw"] else np.nan,
        "probe_raw_ci_low": lambda e: e["probe_raw"]["ci_low"] if e["probe_raw"] else np.nan,
        "probe_raw_ci_high": lambda e: e["probe_raw"]["ci_high"] if e["probe_raw"] else np.nan,
    }
    data = {
        name: (
            (S.LAYER, S.LANGUAGE),
            np.array([[float(get(out_layers[str(la)][lg])) for lg in languages] for la in layers]),
        )
        for name, get in names.items()
    }
    return xr.Dataset(
        data,
        coords={S.LAYER: np.asarray(layers, dtype=np.int32), S.LANGUAGE: strings(languages)},
        attrs={"config": config.to_dict()},
    )
