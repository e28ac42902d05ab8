"""Each analysis as one step: run it, store the result in ``analysis/<name>``, write its JSON.

The CLI (``sae-store analyze ...``) parses options into configs, loads SAEs, and calls these; so
do notebooks and scripts that want the same outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from distributed import Client

from sae_store.analyze.config import BiasConfig, CrossLayerConfig, CrossLingualConfig, InspectConfig
from sae_store.analyze.data import open_features
from sae_store.analyze.interpret import TokenDecoder
from sae_store.analyze.registry import ANALYSES
from sae_store.analyze.results import has_analysis, read_analysis, write_analysis, write_json
from sae_store.analyze.run_bias import run_bias
from sae_store.analyze.run_crosslayer import run_crosslayer
from sae_store.analyze.run_crosslingual import run_crosslingual
from sae_store.analyze.run_inspect import (
    Key,
    collect_top_samples,
    run_interpret,
    run_qualitative,
    run_visual,
)
from sae_store.analyze.topsamples import Encoder, TopSamples
from sae_store.store import ActivationStore, open_store
from sae_store.store import schema as S
from sae_store.store.results import Labels, read_labels, strings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """An opened store with its features group and labels: what every analysis reads."""

    store: ActivationStore
    features: xr.Dataset
    labels: Labels


def open_inputs(store_path: str | Path, features_group: str = S.FEATURES) -> Inputs:
    """Open a store, its features group (refused with what to run if missing) and its labels."""
    store = open_store(store_path)
    return Inputs(store, open_features(store, features_group), read_labels(store))


def _save(inp: Inputs, name: str, ds: xr.Dataset, out_dir: Path, payload: dict[str, Any]) -> Path:
    group = write_analysis(inp.store, name, ds)
    path = write_json(out_dir, ANALYSES[name].result_file, {"store": str(inp.store.path), **payload})
    log.info("%s: wrote %s/%s and %s", name, inp.store.path, group, path)
    return path


def bias_step(
    inp: Inputs,
    config: BiasConfig,
    out_dir: Path,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    client: Client | None = None,
) -> Path:
    """``analyze bias``: returns the path of ``comprehensive_analysis_results.json``."""
    run = run_bias(
        inp.store, inp.features, inp.labels, config, layers=layers, languages=languages, client=client
    )
    return _save(inp, "bias", run.dataset, out_dir, run.payload)


def crosslingual_step(
    inp: Inputs,
    config: CrossLingualConfig,
    out_dir: Path,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    decoders: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    client: Client | None = None,
) -> Path:
    """``analyze crosslingual``: returns the path of ``crosslingual.json``."""
    run = run_crosslingual(
        inp.store,
        inp.features,
        inp.labels,
        config,
        layers=layers,
        languages=languages,
        decoders=decoders,
        client=client,
    )
    return _save(inp, "crosslingual", run.dataset, out_dir, run.payload)


def crosslayer_step(
    inp: Inputs,
    config: CrossLayerConfig,
    out_dir: Path,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    decoders: dict[int, np.ndarray] | None = None,
    client: Client | None = None,
) -> Path:
    """``analyze crosslayer`` (needs the bias results): returns the path of ``crosslayer.json``."""
    bias = read_analysis(inp.store, "bias")
    run = run_crosslayer(
        inp.store,
        inp.features,
        inp.labels,
        bias,
        config,
        layers=layers,
        languages=languages,
        decoders=decoders,
        client=client,
    )
    return _save(inp, "crosslayer", run.dataset, out_dir, run.payload)


def _bias_or_none(inp: Inputs) -> xr.Dataset | None:
    return read_analysis(inp.store, "bias") if has_analysis(inp.store, "bias") else None


def top_samples_step(
    inp: Inputs,
    config: InspectConfig,
    *,
    encoders: Mapping[int, Encoder],
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    given: Sequence[int] | None = None,
) -> dict[Key, TopSamples]:
    """Top samples of the selected features (the shared first half of ``interpret`` and ``visual``)."""
    return collect_top_samples(
        inp.store,
        inp.features,
        _bias_or_none(inp),
        config,
        encoders=encoders,
        layers=layers,
        languages=languages,
        given=given,
    )


def interpret_step(
    inp: Inputs,
    tops: dict[Key, TopSamples],
    config: InspectConfig,
    out_dir: Path,
    *,
    decode: TokenDecoder | None,
) -> Path:
    """``analyze interpret``: returns the path of ``interpret.json``."""
    bias = _bias_or_none(inp)
    statistic = str(bias.attrs["config"]["statistic"]) if bias is not None else "mean"
    run = run_interpret(
        inp.store, inp.features, inp.labels, bias, tops, config, statistic=statistic, decode=decode
    )
    return _save(inp, "interpret", run.dataset, out_dir, run.payload)


def visual_step(inp: Inputs, tops: dict[Key, TopSamples], config: InspectConfig, out_dir: Path) -> Path:
    """``analyze visual``: maps in the store, heatmaps in ``out_dir/visual``; returns ``visual.json``."""
    run = run_visual(inp.store, inp.labels, tops, config, out_dir)
    return _save(inp, "visual", run.dataset, out_dir, run.payload)


def qualitative_step(
    inp: Inputs,
    config: InspectConfig,
    out_dir: Path,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    samples: Sequence[str] | None = None,
) -> Path:
    """``analyze qualitative`` (needs the bias results; uses stored interpretations if any)."""
    bias = read_analysis(inp.store, "bias")
    descriptions: dict[tuple[int, str, int], str] = {}
    if has_analysis(inp.store, "interpret"):
        ds = read_analysis(inp.store, "interpret")
        for la, lg, f, text in zip(
            ds["entry_layer"].values,
            strings(ds["entry_language"].values),
            ds["entry_feature"].values,
            strings(ds["description"].values),
            strict=True,
        ):
            descriptions[(int(la), str(lg), int(f))] = str(text)
    run = run_qualitative(
        inp.store,
        inp.features,
        inp.labels,
        bias,
        config,
        out_dir,
        statistic=str(bias.attrs["config"]["statistic"]),
        layers=layers,
        languages=languages,
        samples=samples,
        descriptions=descriptions,
    )
    return _save(inp, "qualitative", run.dataset, out_dir, run.payload)
