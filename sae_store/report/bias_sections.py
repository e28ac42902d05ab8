"""Sections on gender-biased features: bias across layers, volcano plots, English vs Arabic effects.

Inputs are the results of ``sae-store analyze bias`` as written: the JSON payload
(``comprehensive_analysis_results.json``: per language and layer the counts, ``max_abs_d`` and the
ranked ``male_biased_features`` / ``female_biased_features`` with BCa bootstrap CIs of d) and the store's
``analysis/bias`` Dataset (``d``, ``q`` ... per layer, language and feature).
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from sae_store.report.plotting import (
    COLOURS,
    FIG_SIZE,
    WIDTH,
    figure,
    intervals,
    language_colour,
    layer_ticks,
    line_style,
    styled,
)
from sae_store.report.section import Figure, Frames, Section, Table, Text

#: Non-significant features drawn per volcano frame (all significant ones are always drawn).
MAX_BACKGROUND_POINTS = 2000
#: -log10 q shown for q = 0 (q below the smallest double).
_MAX_LOG_Q = 300.0
_GROUP_COLOURS = {
    "male-biased": COLOURS["male"],
    "female-biased": COLOURS["female"],
    "not significant": COLOURS["neutral"],
}


def _alpha(config: dict[str, Any]) -> float:
    return float(config.get("alpha", 0.05))


def layer_table(bias: dict[str, Any]) -> pd.DataFrame:
    """One row per (language, layer) with the counts and strongest effects as the JSON holds them."""
    rows = []
    for lang, block in bias["by_language"].items():
        for layer, entry in block["layers"].items():
            male = entry.get("male_biased_features") or []
            female = entry.get("female_biased_features") or []
            null = entry.get("permutation_null") or {}
            rows.append(
                {
                    "language": lang,
                    "layer": int(layer),
                    "n_male": entry.get("n_male"),
                    "n_female": entry.get("n_female"),
                    "significant": entry["n_significant"],
                    "male-biased": entry.get("n_male_biased_significant"),
                    "female-biased": entry.get("n_female_biased_significant"),
                    "max |d|": entry.get("max_abs_d"),
                    "top male d": male[0]["d"] if male else np.nan,
                    "top male CI low": male[0].get("ci_low") if male else np.nan,
                    "top male CI high": male[0].get("ci_high") if male else np.nan,
                    "top male CI excluded": male[0].get("ci_excluded", np.nan) if male else np.nan,
                    "top female d": female[0]["d"] if female else np.nan,
                    "top female CI low": female[0].get("ci_low") if female else np.nan,
                    "top female CI high": female[0].get("ci_high") if female else np.nan,
                    "top female CI excluded": female[0].get("ci_excluded", np.nan) if female else np.nan,
                    "null q95": null.get("null_q95", np.nan),
                    "null p": null.get("p_value", np.nan),
                }
            )
    frame = pd.DataFrame(rows).sort_values(["language", "layer"], kind="stable")
    return frame.astype({"top male CI low": float, "top male CI high": float}).reset_index(drop=True)


def _layer_figure(
    name: str, caption: str, overlay: Any, frame: pd.DataFrame, *, title: str, height: int, **opts: Any
) -> Figure:
    """A per-layer line figure with a legend beside the axes (counts fill the plot area at many layers);
    ``opts`` are more options for both backends."""
    common = {"title": title, "show_legend": True, "xticks": _ticks(frame), "padding": 0.08, **opts}
    legend = {"legend_position": "right"}
    bokeh = {"width": WIDTH, "height": height, **legend}
    mpl = {"fig_size": FIG_SIZE, "aspect": 2.2, **legend}
    return figure(name, caption, overlay, common=common, bokeh=bokeh, mpl=mpl)


def _ticks(frame: pd.DataFrame) -> list[int]:
    """Integer layer ticks (at most ~17, so 34 layers stay readable)."""
    return layer_ticks(frame["layer"].unique())


def _significant_figure(frame: pd.DataFrame) -> Figure:
    layers = hv.Dimension("layer")
    count = hv.Dimension("significant", label="significant features (q < alpha)")
    parts = []
    for lang, sub in frame.groupby("language", sort=False):
        colour = language_colour(str(lang))
        points = hv.Scatter(sub, layers, [count, "male-biased", "female-biased"], label=f"{lang}")
        parts.append(
            line_style(hv.Curve(sub, layers, [count], label=f"{lang}"), colour)
            * styled(points, common={"color": colour}, bokeh={"size": 7, "tools": ["hover"]})
        )
        if sub["null q95"].notna().any():
            null = hv.Curve(sub, layers, [("null q95", count.label)], label=f"{lang} null 95%")
            parts.append(line_style(null, colour, dash="dashed"))
    overlay = hv.Overlay(parts)
    return _layer_figure(
        "bias_significant_per_layer",
        "Number of features with q < alpha per layer and language (Benjamini-Hochberg); dashed: the 95% "
        "quantile of discoveries under permuted labels, where the permutation null was run.",
        overlay,
        frame,
        title="Significant gender-biased features per layer",
        height=320,
        ylim=(0, None),  # counts: from 0, so that a few more discoveries do not look like many
    )


def _excluded_note(frame: pd.DataFrame, ci: dict[str, Any]) -> str:
    """How many of the drawn intervals left resamples out (the guard of the bootstrap of d), in words."""
    counts = pd.concat(
        [frame.loc[frame[f"top {g} d"].notna(), f"top {g} CI excluded"] for g in ("male", "female")]
    ).astype(float)
    counts = counts[counts.notna()]
    if counts.empty:
        return ""
    hit = counts[counts > 0]
    total = ci.get("resamples", "B")
    if hit.empty:
        return f" No resample of these intervals was left out (of {total} each)."
    return (
        f" {hit.size} of the {counts.size} intervals left out resamples in which a gender's values were all "
        f"equal (no spread, so d would divide by the other gender's SD alone): at most {int(hit.max())} of "
        f"{total}; the interval is computed from the others."
    )


def _effect_figure(frame: pd.DataFrame, ci: dict[str, Any]) -> Figure:
    layers = hv.Dimension("layer")
    d = hv.Dimension("d", label="Cohen's d (male minus female)")
    parts = []
    for lang, sub in frame.groupby("language", sort=False):
        colour = language_colour(str(lang))
        for direction in ("male", "female"):
            col = f"top {direction} d"
            ok = sub[col].notna()
            if not ok.any():
                continue
            pts = sub[ok]
            dash = None if direction == "male" else "dashed"
            curve = hv.Curve(pts, layers, [(col, d.label)], label=f"{lang} {direction}")
            bounds = (pts[f"top {direction} CI low"], pts[f"top {direction} CI high"])
            parts.append(
                line_style(curve, colour, dash=dash) * intervals(pts["layer"], *bounds, layers, d, colour)
            )
        top = hv.Curve(sub, layers, [("max |d|", d.label)], label=f"{lang} max |d|")
        parts.append(line_style(top, colour, dash="dotted", alpha=0.6))
    overlay = hv.Overlay(parts) * line_style(hv.HLine(0), "black", alpha=0.3)
    level = f"{100 * float(ci.get('level', 0.95)):g}%"
    method = ci.get("method", "bootstrap")
    return _layer_figure(
        "bias_effects_per_layer",
        "Cohen's d of the top-ranked male-biased (solid, above 0) and female-biased (dashed, below 0) "
        f"feature per layer and language with its {level} {method} CI (images resampled within each "
        "gender); dotted: the largest |d| over all features." + _excluded_note(frame, ci),
        overlay,
        frame,
        title=f"Strongest significant effects per layer, with {level} {method} CIs",
        height=360,
    )


def probe_figure(crosslayer: xr.Dataset) -> Figure:
    """Gender-probe accuracy per layer (SAE features and raw activations) with Wilson CIs and chance."""
    frame = crosslayer.to_dataframe().reset_index()
    layers = hv.Dimension("layer")
    acc = hv.Dimension("accuracy", label="probe accuracy (cross-validated)", range=(0.0, 1.0))
    parts = []
    for lang, sub in frame.groupby("language", sort=False):
        colour = language_colour(str(lang))
        for kind, dash in (("sae", None), ("raw", "dashed")):
            col = f"probe_{kind}_accuracy"
            pts = sub[sub[col].notna()]
            if pts.empty:
                continue
            curve = hv.Curve(pts, layers, [(col, acc.label)], label=f"{lang} {kind.upper()} probe")
            ci = intervals(
                pts["layer"], pts[f"probe_{kind}_ci_low"], pts[f"probe_{kind}_ci_high"], layers, acc, colour
            )
            parts.append(line_style(curve, colour, dash=dash) * ci)
        if "probe_chance_accuracy" in sub:
            chance = hv.Curve(sub, layers, [("probe_chance_accuracy", acc.label)], label=f"{lang} chance")
            parts.append(line_style(chance, colour, dash="dotted", alpha=0.6))
    overlay = hv.Overlay(parts)
    return _layer_figure(
        "probe_accuracy_per_layer",
        "Out-of-fold accuracy of a logistic-regression gender probe on per-sample SAE features (solid) "
        "and on mean-pooled raw activations (dashed), with Wilson 95% intervals; dotted: chance, the share "
        "of the larger gender among the probed samples (what always guessing that gender scores; 0.5 when "
        "balanced). From `analyze crosslayer`.",
        overlay,
        frame,
        title="Gender probe accuracy per layer, with 95% CIs",
        height=340,
        ylim=(0.0, 1.05),
    )


def bias_layers_section(bias: dict[str, Any], crosslayer: xr.Dataset | None = None) -> Section:
    """Bias across layers: significant features, strongest effects with CIs, and probe accuracy."""
    frame = layer_table(bias)
    config = bias.get("config", {})
    intro = (
        f"Per-sample feature `{config.get('statistic', 'mean')}` over tokens; "
        f"test `{config.get('test', '?')}`; "
        f"q-values by Benjamini-Hochberg ({config.get('correction', '?')}); alpha = {_alpha(config)}. "
        f"Sign: {bias.get('sign', 'male minus female')}."
    )
    items: list[Any] = [Text(intro), _significant_figure(frame), _effect_figure(frame, bias.get("ci") or {})]
    if crosslayer is not None:
        items.append(probe_figure(crosslayer))
    shown = frame[
        [
            "language",
            "layer",
            "n_male",
            "n_female",
            "significant",
            "male-biased",
            "female-biased",
            "max |d|",
            "null q95",
            "null p",
        ]
    ]
    items.append(Table(shown.dropna(axis=1, how="all"), "Per layer and language", max_rows=80))
    best = frame.iloc[int(np.argmax(frame["significant"].to_numpy()))] if len(frame) else None
    most = None
    if best is not None:
        most = {
            "language": best["language"],
            "layer": int(best["layer"]),
            "significant": int(best["significant"]),
        }
    summary: dict[str, Any] = {
        "per_layer": frame.to_dict(orient="records"),
        "most_significant": most,
        "config": config,
    }
    if crosslayer is not None:
        probes = crosslayer.to_dataframe().reset_index()
        summary["probes"] = probes[
            [c for c in probes.columns if c.startswith("probe") or c in ("layer", "language")]
        ].to_dict(orient="records")
    return Section("bias_layers", "Bias across layers", items, summary)


def _volcano_frame(
    ds: xr.Dataset, layer: int, language: str, alpha: float, rng: np.random.Generator
) -> pd.DataFrame:
    sel = ds.sel(layer=layer, language=language)
    d = np.asarray(sel["d"].values, dtype=float)
    q = np.asarray(sel["q"].values, dtype=float)
    feature = np.asarray(ds["feature"].values)
    ok = np.isfinite(d) & np.isfinite(q)
    sig = ok & (q < alpha)
    group = np.where(
        sig & (d > 0), "male-biased", np.where(sig & (d < 0), "female-biased", "not significant")
    )
    background = np.flatnonzero(ok & ~sig)
    if background.size > MAX_BACKGROUND_POINTS:
        background = np.sort(rng.choice(background, MAX_BACKGROUND_POINTS, replace=False))
    keep = np.concatenate([background, np.flatnonzero(sig)])
    with np.errstate(divide="ignore"):
        logq = np.minimum(-np.log10(q[keep]), _MAX_LOG_Q)
    return pd.DataFrame(
        {"d": d[keep], "-log10 q": logq, "q": q[keep], "feature": feature[keep], "group": group[keep]}
    )


def _volcano(frame: pd.DataFrame, alpha: float, title: str) -> hv.Overlay:
    scatter = styled(
        hv.Scatter(frame, ("d", "Cohen's d (male minus female)"), ["-log10 q", "q", "feature", "group"]),
        common={"color": hv.dim("group").categorize(_GROUP_COLOURS), "alpha": 0.7, "title": title},
        bokeh={"width": WIDTH, "height": 420, "size": 5, "tools": ["hover"]},
        mpl={"s": 10, "fig_size": FIG_SIZE, "aspect": 1.3},
    )
    line = line_style(hv.HLine(-np.log10(alpha)), "black", dash="dashed", alpha=0.4)
    return scatter * line


def volcano_section(ds: xr.Dataset, *, seed: int = 0) -> Section:
    """Volcano plots (Cohen's d vs -log10 q) per layer and language, with a slider over both."""
    config = ds.attrs.get("config", {})
    alpha = _alpha(config if isinstance(config, dict) else {})
    layers = [int(v) for v in ds["layer"].values]
    languages = [str(v) for v in ds["language"].values]
    rng = np.random.default_rng(seed)
    frames = {
        (layer, lang): _volcano_frame(ds, layer, lang, alpha, rng) for layer in layers for lang in languages
    }
    interactive = Frames(
        ("layer", "language"),
        {
            key: _volcano(frame, alpha, f"Volcano plot: layer {key[0]}, {key[1]}")
            for key, frame in frames.items()
        },
    )
    n_sig = ds["n_significant"].sum("language") if "n_significant" in ds else None
    best = layers[int(np.argmax(n_sig.values))] if n_sig is not None else layers[0]
    static = hv.Layout(
        [_volcano(frames[(best, lang)], alpha, f"layer {best}, {lang}") for lang in languages]
    ).cols(2)
    n_total = ds.sizes["feature"]
    grey = (
        "grey: not significant"
        if n_total <= MAX_BACKGROUND_POINTS
        else f"grey: not significant, of which at most {MAX_BACKGROUND_POINTS} of the {n_total} features per "
        "frame are drawn (a seeded random subset; every significant feature is drawn)"
    )
    caption = (
        f"Each point is a feature: effect size vs -log10 q; dashed line q = {alpha}. Blue: male-biased, red: "
        f"female-biased (q < {alpha}); {grey}. "
        f"The PNG shows layer {best}, the layer with the most significant features."
    )
    counts = {
        f"{layer}/{lang}": int((frames[(layer, lang)]["group"] != "not significant").sum())
        for layer, lang in frames
    }
    return Section(
        "volcano",
        "Volcano plots per layer and language",
        [Figure("volcano", caption, interactive, static)],
        {"alpha": alpha, "significant_per_layer_language": counts, "png_layer": best},
    )
