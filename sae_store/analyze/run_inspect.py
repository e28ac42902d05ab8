"""``analyze interpret``, ``visual`` and ``qualitative`` on a store.

These look at a handful of features and samples, so they run in this process (no cluster): the
cost is encoding the top samples' tokens with each layer's SAE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sae_store.analyze.config import InspectConfig
from sae_store.analyze.data import Inputs, choose, feature_matrix
from sae_store.analyze.interpret import TokenDecoder, interpret_features
from sae_store.analyze.qualitative import COLUMNS, pick_samples, table_rows, top_biased_rows, write_markdown
from sae_store.analyze.results import AnalysisRun
from sae_store.analyze.topsamples import Encoder, TopSamples, chosen_features, find_top_samples
from sae_store.analyze.visual import feature_maps, grid_side, render_feature
from sae_store.data.images import load_image
from sae_store.errors import SaeStoreError
from sae_store.progress import progress_bar
from sae_store.store import schema as S
from sae_store.store.results import strings

Key = tuple[int, str]


def collect_top_samples(
    inp: Inputs,
    bias: xr.Dataset | None,
    config: InspectConfig,
    *,
    encoders: Mapping[int, Encoder],
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    given: Sequence[int] | None = None,
) -> dict[Key, TopSamples]:
    """Top samples and token activations of the selected features of every (layer, language)."""
    store, features, _ = inp
    layers, languages = choose(features, layers, languages)
    missing = [layer for layer in layers if layer not in encoders]
    if missing:
        raise SaeStoreError(f"no SAE for layers {missing}; pass --saes with a layer_<L> folder for each")
    out = {}
    for layer, lang in progress_bar(
        [(la, lg) for la in layers for lg in languages], desc="top samples", unit="layer"
    ):
        chosen, direction = chosen_features(bias, layer, lang, given, config.n_features)
        out[(layer, lang)] = find_top_samples(
            store,
            features,
            layer,
            lang,
            chosen,
            direction,
            encode=encoders[layer],
            k=config.top_k,
            rank_by=config.rank_by,
        )
    return out


def _entries(tops: dict[Key, TopSamples]) -> dict[str, Any]:
    """The ``entry`` coordinates: one entry per (layer, language, feature) inspected."""
    keys = [(k, i) for k, t in tops.items() for i in range(len(t.features))]
    return {
        "direction": ("entry", strings([tops[k].direction[i] for k, i in keys])),
        "entry_layer": ("entry", np.array([k[0] for k, _ in keys], dtype=np.int32)),
        "entry_language": ("entry", strings([k[1] for k, _ in keys])),
        "entry_feature": ("entry", np.array([int(tops[k].features[i]) for k, i in keys], dtype=np.int64)),
    }


def _pad(rows: list[np.ndarray], tail: tuple[int, ...], fill: Any, dtype: Any) -> np.ndarray:
    """Stack ragged rows (fewer top samples than asked) into (len(rows), *tail), padded with ``fill``."""
    out = np.full((len(rows), *tail), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def run_interpret(
    inp: Inputs,
    bias: xr.Dataset | None,
    tops: dict[Key, TopSamples],
    config: InspectConfig,
    *,
    statistic: str = "mean",
    decode: TokenDecoder | None = None,
) -> AnalysisRun:
    """Interpretations of the features in ``tops`` (see :mod:`sae_store.analyze.interpret`)."""
    store, features, labels = inp
    image_tokens = int(store.attrs.get("image_tokens", 0))
    records, hists, edges = [], [], []
    for top in tops.values():
        result = interpret_features(
            top,
            features,
            labels,
            bias,
            statistic=statistic,
            bins=config.bins,
            image_tokens=image_tokens,
            decode=decode,
        )
        records += result.records
        hists += list(result.hist)
        edges += list(result.edges)
    languages = [str(v) for v in features[S.LANGUAGE].values]
    k = config.top_k
    data_vars = {
        **_entries(tops),
        "description": ("entry", strings([r["description"] for r in records])),
        "top_sample": (
            ("entry", "rank"),
            _pad(
                [np.array([s["sample"] for s in r["top_samples"]], dtype=object) for r in records],
                (k,),
                "",
                object,
            ),
        ),
        "top_value": (
            ("entry", "rank"),
            _pad(
                [np.array([s["value"] for s in r["top_samples"]]) for r in records], (k,), np.nan, np.float64
            ),
        ),
        "histogram": (
            ("entry", "hist_language", "gender", "bin"),
            np.stack(hists) if hists else np.zeros((0, len(languages), 2, config.bins), dtype=np.int64),
        ),
        "histogram_edges": (("entry", "edge"), np.stack(edges) if edges else np.zeros((0, config.bins + 1))),
    }
    ds = xr.Dataset(
        data_vars,
        coords={"hist_language": strings(languages), "gender": strings(["male", "female"])},
        attrs={"config": config.to_dict(), "statistic": statistic},
    )
    return AnalysisRun(
        ds, {"analysis": "interpret", "config": config.to_dict(), "statistic": statistic, "features": records}
    )


def run_visual(inp: Inputs, tops: dict[Key, TopSamples], config: InspectConfig, out_dir: Path) -> AnalysisRun:
    """Image-token maps of the features in ``tops``, stored as arrays and drawn as PNG heatmaps."""
    store, _, labels = inp
    image_tokens = int(store.attrs.get("image_tokens", 0))
    images_dir = Path(labels.images_dir)
    row_of = {s: i for i, s in enumerate(labels.sample)}
    maps_all, means, samples, files, records = [], [], [], [], []
    for (layer, lang), top in progress_bar(tops.items(), desc="feature maps", unit="layer"):
        maps, mean = feature_maps(top.token_acts, top.roles, image_tokens)
        for i, f in enumerate(top.features):
            sample_ids = [str(s) for s in top.sample_ids[i]]
            rows = [row_of[s] for s in sample_ids]
            images = [load_image(images_dir / labels.image[r], config.image_size) for r in rows]
            titles = [
                f"{s} ({labels.gender[r]}) {v:.2g}"
                for s, r, v in zip(sample_ids, rows, top.values[i], strict=True)
            ]
            png = out_dir / "visual" / f"layer{layer}_{lang}_feature{int(f)}.png"
            heading = f"layer {layer} ({lang}) feature {int(f)}: {top.direction[i]}"
            files.append(render_feature(png, maps[i], mean[i], images, titles, heading))
            maps_all.append(maps[i])
            means.append(mean[i])
            samples.append(np.array(sample_ids, dtype=object))
            records.append(
                {
                    "layer": layer,
                    "language": lang,
                    "feature": int(f),
                    "direction": top.direction[i],
                    "samples": sample_ids,
                    "mean_map": mean[i].tolist(),
                    "png": str(png),
                    "missing_images": [
                        labels.image[r] for r, im in zip(rows, images, strict=True) if im is None
                    ],
                }
            )
    side = grid_side(image_tokens)
    k = config.top_k
    ds = xr.Dataset(
        {
            **_entries(tops),
            "map": (("entry", "rank", "gy", "gx"), _pad(maps_all, (k, side, side), np.nan, np.float32)),
            "mean_map": (("entry", "gy", "gx"), _pad(means, (side, side), np.nan, np.float32)),
            "sample": (("entry", "rank"), _pad(samples, (k,), "", object)),
        },
        attrs={
            "config": config.to_dict(),
            "image_tokens": image_tokens,
            "layout": "row-major image-token grid",
        },
    )
    return AnalysisRun(ds, {"analysis": "visual", "config": config.to_dict(), "features": records}, files)


def run_qualitative(
    inp: Inputs,
    bias: xr.Dataset,
    config: InspectConfig,
    out_dir: Path,
    *,
    statistic: str = "mean",
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    samples: Sequence[str] | None = None,
    descriptions: dict[tuple[int, str, int], str] | None = None,
) -> AnalysisRun:
    """Per sample, the significant biased features most active on it, with interpretations and captions."""
    _, features, labels = inp
    layers, languages = choose(features, layers, languages)
    if samples is None:
        rows = pick_samples(labels, config.n_samples, config.seed)
    else:
        where = {s: i for i, s in enumerate(labels.sample)}
        unknown = [s for s in samples if s not in where]
        if unknown:
            raise SaeStoreError(f"samples {unknown[:5]} are not in the store")
        rows = np.array([where[s] for s in samples], dtype=np.int64)
    ids = strings(features[S.SAMPLE].values)
    pos = {s: i for i, s in enumerate(ids)}
    alpha = float(bias.attrs["config"]["alpha"])
    table: list[dict[str, Any]] = []
    for layer in layers:
        for lang in languages:
            b = bias.sel({S.LAYER: layer, S.LANGUAGE: lang})
            d, q = b["d"].values, b["q"].values
            at = [pos[labels.sample[r]] for r in rows]
            values = np.asarray(feature_matrix(features, statistic, layer, lang).isel({S.SAMPLE: at}).values)
            for r, v in zip(rows, values, strict=True):
                hits = top_biased_rows(v, d, q, alpha=alpha, n=config.features_per_sample)
                table += table_rows(
                    labels.sample[r], int(r), labels, layer, lang, hits, d, q, descriptions or {}
                )
    frame = pd.DataFrame(table, columns=list(COLUMNS))
    csv = out_dir / "qualitative.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    md = write_markdown(table, out_dir / "qualitative.md")
    ds = xr.Dataset(
        {
            c: ("row", strings(frame[c].astype(str)) if frame[c].dtype == object else frame[c].to_numpy())
            for c in COLUMNS
        },
        attrs={"config": config.to_dict(), "statistic": statistic},
    )
    return AnalysisRun(ds, {"analysis": "qualitative", "config": config.to_dict(), "rows": table}, [csv, md])
