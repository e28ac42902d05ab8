"""Which SAE set to trust: the evaluation of every SAE set (``sae-store evaluate``) side by side.

Inputs are the store's ``evaluation/<set>`` groups (:func:`~sae_store.evaluate.read_evaluations`):
the best set per layer and the margin (:func:`~sae_store.evaluate.best_per_layer`), one line per set
across layers for the headline metrics, the per-layer table, the splits by token role and language
(a split without tokens says so), and the log10 feature-density histograms per token role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from sae_store.evaluate import best_per_layer, comparison_table
from sae_store.evaluate.compare import HEADERS
from sae_store.report.plotting import layer_ticks, line_style, styled
from sae_store.report.section import Figure, Frames, Section, Table, Text

#: Colours of the SAE sets, in the order they are listed.
SET_COLOURS = ("#6a3d9a", "#2a9d8f", "#e76f51", "#1f77b4", "#d62728", "#8c564b", "#7f7f7f")
#: Panels of the across-layer figure: column of the comparison table, label.
PANELS = (
    ("explained_variance", "explained variance (image + text tokens)"),
    ("ce_loss_score:image", "CE loss recovered (SAE at image tokens)"),
    ("ce_loss_score:all", "CE loss recovered (SAE at every token)"),
    ("kl_div_score:all", "KL score (SAE at every token)"),
    ("l0", "L0 (active latents per token)"),
    ("gender probe top-1 latent", "gender probe accuracy (top-1 latent, image)"),
)
#: Columns of the per-split table (reconstruction metrics), with their headers.
SPLIT_COLUMNS = {
    "explained_variance": "explained variance",
    "explained_variance_legacy": "legacy (SAEBench paper)",
    "cossim": "cosine",
    "l0": "L0",
    "dead_fraction": "dead",
    "freq_over_10_percent": "dense (>10 %)",
}


def _colour(names: list[str], name: str) -> str:
    return SET_COLOURS[names.index(name) % len(SET_COLOURS)]


def evaluation_figure(table: pd.DataFrame) -> hv.Layout:
    """One panel per headline metric across layers, one line per SAE set (the report and the explorer)."""
    names = sorted(table["set"].unique())
    layers = sorted(table["layer"].unique())
    panels = []
    for column, label in PANELS:
        if column not in table or not np.isfinite(table[column].astype(float)).any():
            continue
        # the panel's title says what the metric is; its y label stays short enough for the panel
        dim = hv.Dimension(column, label=label.split(" (")[0])
        curves = []
        for name in names:
            sub = table[table["set"] == name].sort_values("layer")
            pts = list(zip(sub["layer"], sub[column].astype(float), strict=True))
            curves.append(
                line_style(hv.Curve(pts, "layer", dim, label=name), _colour(names, name))
                * line_style(hv.Scatter(pts, "layer", dim, label=name), _colour(names, name))
            )
        panels.append(
            styled(
                hv.Overlay(curves),
                common={"title": label, "show_legend": True, "xticks": layer_ticks(layers, most=9)},
                bokeh={"width": 420, "height": 240},
                mpl={"fig_size": 80, "aspect": 1.6},
            )
        )
    return hv.Layout(panels).cols(2)


def _splits(evaluations: Mapping[str, xr.Dataset]) -> pd.DataFrame:
    rows = []
    for name, ds in evaluations.items():
        for layer in ds["layer"].values.tolist():
            for lang in ds["language"].values.tolist():
                for role in ds["role"].values.tolist():
                    at = ds["reconstruction"].sel(layer=layer, language=lang, role=role)
                    tokens = int(at.sel(metric="tokens"))
                    row: dict[str, Any] = {
                        "set": name,
                        "layer": layer,
                        "split": f"{lang}/{role}",
                        "tokens": tokens,
                    }
                    for metric, header in SPLIT_COLUMNS.items():
                        row[header] = float(at.sel(metric=metric)) if tokens else "no tokens"
                    rows.append(row)
    return pd.DataFrame(rows)


#: The token roles whose firing densities the report draws, and their line dash.
_DENSITY_ROLES = {"image": None, "text": "dashed"}


def _histograms(evaluations: Mapping[str, xr.Dataset]) -> Frames:
    names = sorted(evaluations)
    views = {}
    first = evaluations[names[0]]
    for layer in sorted({la for ds in evaluations.values() for la in ds["layer"].values.tolist()}):
        for lang in first["language"].values.tolist():
            curves = []
            for name in names:
                ds = evaluations[name]
                if layer not in ds["layer"].values:
                    continue
                edges = ds["density_bin"].values.astype(float) + 0.125
                for role, dash in _DENSITY_ROLES.items():  # per token role, as the explorer draws it
                    counts = ds["density_histogram"].sel(layer=layer, language=lang, role=role).values
                    curve = hv.Curve((edges, counts), "log10 density", "latents", label=f"{name}, {role}")
                    curves.append(
                        line_style(curve.opts(interpolation="steps-mid"), _colour(names, name), dash=dash)
                    )
            views[(layer, str(lang))] = styled(
                hv.Overlay(curves),
                common={
                    "title": f"layer {layer}, {lang}: latents by log10 firing density",
                    "show_legend": True,
                },
                bokeh={"width": 520, "height": 260},
            )
    return Frames(("layer", "language"), views)


def evaluation_section(evaluations: Mapping[str, xr.Dataset]) -> Section:
    """The SAE sets' evaluation (at least one set with one complete layer)."""
    table = comparison_table(evaluations)
    first = next(iter(evaluations.values()))
    config = first.attrs.get("config") or {}
    config = json.loads(config) if isinstance(config, str) else config
    rank_by = str(config.get("rank_by", "ce_loss_score:image"))
    best = best_per_layer(table, rank_by)
    records = {name: json.loads(str(ds["sae_record"].values[0]) or "{}") for name, ds in evaluations.items()}
    skipped = sorted({r.get("behaviour", "") for r in records.values()} - {"measured", ""})
    samples = {r.get("samples") for r in records.values()}
    names = ", ".join(f"`{n}`" for n in evaluations)
    counts = "/".join(str(s) for s in sorted(samples, key=str))
    choice = config.get("samples", "held-out")
    items: list[Any] = [
        Text(
            f"{len(evaluations)} SAE set(s) ({names}) measured on the same {counts} samples ({choice}: those "
            "`sae-store train` holds out, never seen by the store's own SAEs) with `sae-store evaluate`. "
            "Explained variance = 1 - sum of squared errors / sum of squared deviations from the "
            "per-dimension mean (SAELens since PR #665); the legacy value is SAEBench's per-token ratio with "
            "batch means, which its paper reports. CE loss recovered = (CE zero-ablated - CE with the SAE) / "
            "(CE zero-ablated - CE clean) and KL score = (KL zero-ablated - KL with the SAE) / KL "
            "zero-ablated, SAEBench's `ce_loss_score` and `kl_div_score`, on the teacher-forced reference "
            "captions with the SAE replacing the layer output at image tokens or at every token. Probes: "
            "SAEBench's sparse probing (the top-1 latent by class-mean difference) of gender from a "
            "sample's mean latents over its image tokens, beside a probe on every raw dimension."
        ),
        Table(best, f"Best set per layer, by {rank_by} (explained variance where it was not measured)"),
    ]
    if skipped:
        items.append(Text("Model runs: " + "; ".join(skipped)))
    panels = evaluation_figure(table)
    items.append(Figure("evaluation", "SAE sets across layers (one line per set).", panels, panels))
    items.append(Table(table.rename(columns=HEADERS), "Per layer and set", max_rows=200))
    items.append(Table(_splits(evaluations), "By token role and language", max_rows=200))
    items.append(
        Figure(
            "evaluation_density",
            "Latents by log10 firing density on image tokens (solid) and on text tokens (dashed), per "
            "layer and language (dead latents left out).",
            _histograms(evaluations),
        )
    )
    summary = {"best": best.to_dict(orient="records"), "per_layer": table.to_dict(orient="records")}
    return Section("evaluation", "Which SAE to trust", items, summary)
