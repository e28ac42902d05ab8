"""English vs Arabic: the same features' gender effects in both languages (``analyze crosslingual``).

Inputs are the store's ``analysis/crosslingual`` Dataset (per layer and feature ``d_<a>``, ``d_<b>``;
per layer the Spearman correlation ``rho`` over features with its CI (Fisher z with the Bonett-Wright
variance, ``attrs["rho_ci_method"]``) and top-k overlaps with their chance expectation and permutation
p-value) and, for colouring, ``analysis/bias`` (q-values).
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from sae_store.report.bias_sections import MAX_BACKGROUND_POINTS, _alpha, _ticks
from sae_store.report.plotting import COLOURS, FIG_SIZE, WIDTH, intervals, line_style, styled
from sae_store.report.section import Figure, Frames, Section, Table, Text

#: Class of a feature significant in neither language (drawn grey, underneath the others).
NEITHER = "significant in neither"
_CLASS_COLOURS = {
    "significant in both": COLOURS["targeted"],
    "significant in {a} only": COLOURS["en"],
    "significant in {b} only": COLOURS["ar"],
    NEITHER: COLOURS["neutral"],
}
DIRECTIONS = ("abs", "male", "female")


def _classes(a: str, b: str) -> dict[str, str]:
    return {k.format(a=a, b=b): v for k, v in _CLASS_COLOURS.items()}


def _scatter_frame(
    ds: xr.Dataset, bias: xr.Dataset | None, layer: int, a: str, b: str, rng: np.random.Generator
) -> pd.DataFrame:
    sel = ds.sel(layer=layer)
    da, db = np.asarray(sel[f"d_{a}"].values, float), np.asarray(sel[f"d_{b}"].values, float)
    feature = np.asarray(ds["feature"].values)
    ok = np.isfinite(da) & np.isfinite(db)
    label = np.full(da.shape, NEITHER, dtype=object)
    if bias is not None and layer in bias["layer"].values:
        alpha = _alpha(bias.attrs.get("config", {}))
        qa = np.asarray(bias["q"].sel(layer=layer, language=a).values) < alpha
        qb = np.asarray(bias["q"].sel(layer=layer, language=b).values) < alpha
        label[qa & qb] = "significant in both"
        label[qa & ~qb] = f"significant in {a} only"
        label[~qa & qb] = f"significant in {b} only"
    background = np.flatnonzero(ok & (label == NEITHER))
    if background.size > MAX_BACKGROUND_POINTS:
        background = np.sort(rng.choice(background, MAX_BACKGROUND_POINTS, replace=False))
    keep = np.concatenate([background, np.flatnonzero(ok & (label != NEITHER))])
    return pd.DataFrame(
        {
            f"d {a}": da[keep],
            f"d {b}": db[keep],
            "feature": feature[keep],
            "class": label[keep],
            "paired r": np.asarray(sel["paired_r"].values, float)[keep],
        }
    )


def _scatter(frame: pd.DataFrame, a: str, b: str, title: str) -> hv.Overlay:
    lim = float(np.nanmax(np.abs(frame[[f"d {a}", f"d {b}"]].to_numpy()), initial=1.0)) * 1.05
    # one layer per class, NEITHER first (underneath): the legend names each colour
    points = [
        styled(
            hv.Scatter(
                frame[frame["class"] == name],
                f"d {a}",
                [f"d {b}", "feature", "class", "paired r"],
                label=name,
            ),
            common={"color": colour, "alpha": 0.7},
            bokeh={"size": 5, "tools": ["hover"]},
            mpl={"s": 10},
        )
        for name, colour in reversed(_classes(a, b).items())
        if (frame["class"] == name).any()
    ]
    diagonal = line_style(
        hv.Curve([(-lim, -lim), (lim, lim)], f"d {a}", f"d {b}"), "black", dash="dashed", alpha=0.4
    )
    return styled(
        hv.Overlay([*points, diagonal]),
        common={
            "title": title,
            "xlim": (-lim, lim),
            "ylim": (-lim, lim),
            "show_legend": True,
            "legend_position": "right",  # beside the axes: inside it would hide points
        },
        bokeh={"frame_width": 460, "frame_height": 460},
        mpl={"fig_size": FIG_SIZE, "aspect": 1.0},
    )


#: What the interval of rho is, for captions (a store written before it was stored says nothing).
RHO_CI_TEXT = (
    "{level} CI ({method}, computed over the features used): it takes the images as given and says how "
    "well that many features pin the correlation down. Sampling noise in each d (see the CIs of d in the "
    "bias section) pulls rho towards 0, or away from it where the same images move both languages alike"
)


def _rho_figure(frame: pd.DataFrame, a: str, b: str, ci_text: str) -> Figure:
    layers = hv.Dimension("layer")
    rho = hv.Dimension("rho", label=f"Spearman rho of d ({a} vs {b})")
    overlay = (
        line_style(hv.Curve(frame, layers, [("rho", rho.label)]), COLOURS["targeted"])
        * intervals(frame["layer"], frame["rho_low"], frame["rho_high"], layers, rho, COLOURS["targeted"])
        * line_style(hv.HLine(0), "black", alpha=0.3)
    )
    # the axis reaches 0 (no correlation): a range of a few hundredths would make small differences
    # between layers look large
    low = float(np.nanmin([0.0, *frame["rho_low"], *frame["rho"]]))
    high = float(np.nanmax([0.0, *frame["rho_high"], *frame["rho"]]))
    pad = 0.05 * ((high - low) or 1.0)
    common = {
        "title": "Agreement of gender effects between languages",
        "xticks": _ticks(frame),
        "padding": 0.08,
        "ylim": (low - pad, high + pad),
    }
    return Figure(
        "crosslingual_rho",
        f"Spearman correlation over features of Cohen's d in {a} and {b}, per layer, with its {ci_text}.",
        styled(overlay.clone(), common=common, bokeh={"width": WIDTH, "height": 300}),
        styled(overlay.clone(), common=common, mpl={"fig_size": FIG_SIZE, "aspect": 2.5}),
    )


def _rho_table(frame: pd.DataFrame, level: str) -> Table:
    names = {
        "layer": "layer",
        "rho": "Spearman rho",
        "rho_low": f"{level} CI low",
        "rho_high": f"{level} CI high",
    }
    names["rho_n_features"] = "features used"
    shown = frame[[c for c in names if c in frame]].rename(columns=names)
    return Table(shown, "Spearman rho of d per layer", max_rows=len(frame))


def crosslingual_section(ds: xr.Dataset, bias: xr.Dataset | None = None, *, seed: int = 0) -> Section:
    """EN vs AR effect scatter per layer (slider), correlation with CIs, and top-k overlap vs chance."""
    a, b = (str(v) for v in ds.attrs["languages"])
    layers = [int(v) for v in ds["layer"].values]
    rng = np.random.default_rng(seed)
    frames = {layer: _scatter_frame(ds, bias, layer, a, b, rng) for layer in layers}
    per_layer = ds[[v for v in ds.data_vars if ds[v].dims == ("layer",)]].to_dataframe().reset_index()
    best = (
        layers[int(np.nanargmax(np.abs(per_layer["rho"].to_numpy())))]
        if per_layer["rho"].notna().any()
        else layers[0]
    )
    interactive = Frames(
        ("layer",),
        {(layer,): _scatter(f, a, b, f"Cohen's d, {a} vs {b}: layer {layer}") for layer, f in frames.items()},
    )
    static = _scatter(frames[best], a, b, f"Cohen's d, {a} vs {b}: layer {best}")
    config = ds.attrs.get("config", {})
    config = config if isinstance(config, dict) else {}
    k = config.get("top_k", "k")
    level = f"{100 * float(config.get('ci_level', 0.95)):g}%"
    method = ds.attrs.get("rho_ci_method")
    ci_text = RHO_CI_TEXT.format(level=level, method=method) if method else f"{level} bootstrap CI"
    overlap_rows = []
    for _, row in per_layer.iterrows():
        for direction in DIRECTIONS:
            overlap_rows.append(
                {
                    "layer": int(row["layer"]),
                    "top-k set": direction,
                    "overlap": row[f"overlap_{direction}_count"],
                    "chance k^2/n": row[f"overlap_{direction}_expected"],
                    "Jaccard": row[f"overlap_{direction}_jaccard"],
                    "permutation p": row[f"overlap_{direction}_p_value"],
                }
            )
    overlaps = pd.DataFrame(overlap_rows)
    items: list[Any] = [
        Text(
            f"Features aligned by: {ds.attrs.get('aligned_by', '?')}. Each point is a feature; colours "
            f"use the bias q-values of each language. At most {MAX_BACKGROUND_POINTS} features significant "
            "in neither language are drawn per layer (a seeded random subset)."
        ),
        Figure(
            "crosslingual_scatter",
            f"Per-feature Cohen's d in {a} (x) vs {b} (y); dashed: equal effects. The PNG "
            f"shows layer {best}, the layer with the largest |rho|.",
            interactive,
            static,
        ),
        _rho_figure(per_layer, a, b, ci_text),
        _rho_table(per_layer, level),
        Table(
            overlaps,
            f"Overlap of the top-{k} biased features of {a} and {b} with its chance expectation",
            max_rows=3 * len(layers),
        ),
    ]
    summary = {
        "languages": [a, b],
        "aligned_by": ds.attrs.get("aligned_by"),
        "per_layer": per_layer.to_dict(orient="records"),
        "png_layer": best,
    }
    return Section("crosslingual", f"Cross-lingual: {a} vs {b}", items, summary)
