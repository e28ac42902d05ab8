"""Each analysis as one step: run it, store the result in ``analysis/<name>``, write its JSON.

The CLI (``sae-store analyze ...``) parses options into configs, loads SAEs, and calls these; so
do notebooks and scripts that want the same outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import xarray as xr

from sae_store.analyze.config import BiasConfig, CrossLayerConfig, CrossLingualConfig, InspectConfig
from sae_store.analyze.data import Inputs
from sae_store.analyze.interpret import TokenDecoder
from sae_store.analyze.registry import ANALYSES
from sae_store.analyze.results import AnalysisRun, has_analysis, read_analysis, write_analysis, write_json
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
from sae_store.analyze.topsamples import TopSamples
from sae_store.store.results import strings

log = logging.getLogger(__name__)


def save_run(inp: Inputs, name: str, run: AnalysisRun, out_dir: Path) -> Path:
    """Store ``run`` in ``analysis/<name>`` and write its JSON file; returns the JSON's path."""
    group = write_analysis(inp.store, name, run.dataset)
    path = write_json(out_dir, ANALYSES[name].result_file, {"store": str(inp.store.path), **run.payload})
    log.info("%s: wrote %s/%s and %s", name, inp.store.path, group, path)
    return path


def bias_step(inp: Inputs, config: BiasConfig, out_dir: Path, **options: Any) -> Path:
    """``analyze bias`` (``options``: :func:`run_bias`'s); returns ``comprehensive_analysis_results.json``."""
    return save_run(inp, "bias", run_bias(inp, config, **options), out_dir)


def crosslingual_step(inp: Inputs, config: CrossLingualConfig, out_dir: Path, **options: Any) -> Path:
    """``analyze crosslingual`` (``options``: :func:`run_crosslingual`'s); returns ``crosslingual.json``."""
    return save_run(inp, "crosslingual", run_crosslingual(inp, config, **options), out_dir)


def crosslayer_step(inp: Inputs, config: CrossLayerConfig, out_dir: Path, **options: Any) -> Path:
    """``analyze crosslayer`` (needs the bias results; ``options``: :func:`run_crosslayer`'s)."""
    run = run_crosslayer(inp, read_analysis(inp.store, "bias"), config, **options)
    return save_run(inp, "crosslayer", run, out_dir)


def _bias_or_none(inp: Inputs) -> xr.Dataset | None:
    return read_analysis(inp.store, "bias") if has_analysis(inp.store, "bias") else None


def top_samples_step(inp: Inputs, config: InspectConfig, **options: Any) -> dict[Key, TopSamples]:
    """Top samples of the selected features (the shared first half of ``interpret`` and ``visual``;
    ``options``: :func:`collect_top_samples`'s)."""
    return collect_top_samples(inp, _bias_or_none(inp), config, **options)


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
    run = run_interpret(inp, bias, tops, config, statistic=statistic, decode=decode)
    return save_run(inp, "interpret", run, out_dir)


def visual_step(inp: Inputs, tops: dict[Key, TopSamples], config: InspectConfig, out_dir: Path) -> Path:
    """``analyze visual``: maps in the store, heatmaps in ``out_dir/visual``; returns ``visual.json``."""
    return save_run(inp, "visual", run_visual(inp, tops, config, out_dir), out_dir)


def qualitative_step(
    inp: Inputs,
    config: InspectConfig,
    out_dir: Path,
    **options: Any,
) -> Path:
    """``analyze qualitative`` (needs the bias results; uses stored interpretations if any; ``options``:
    :func:`run_qualitative`'s ``layers``, ``languages`` and ``samples``)."""
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
        inp,
        bias,
        config,
        out_dir,
        statistic=str(bias.attrs["config"]["statistic"]),
        descriptions=descriptions,
        **options,
    )
    return save_run(inp, "qualitative", run, out_dir)
