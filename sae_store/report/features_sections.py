"""Feature dashboards: top samples with image thumbnails and their 16 x 16 image-token heatmaps,
activation histograms by gender and language, descriptions and captions.

Inputs are ``analysis/interpret`` (per inspected feature: description, top samples and values,
histograms per language and gender), ``analysis/visual`` (per feature and top sample: the activation
over the image-token grid) and the store's labels and images, assembled by :func:`dashboards`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from sae_store.analyze.qualitative import COLUMNS
from sae_store.report.plotting import COLOURS, styled
from sae_store.report.section import Figure, Frames, Notice, Section, Table, Text
from sae_store.store.results import Labels, is_label_code, strings

#: Dashboards drawn at most (each embeds its thumbnails in the HTML file).
MAX_DASHBOARDS = 12
#: Thumbnail side in pixels (the heatmap is drawn over the thumbnail).
THUMBNAIL = 64
_BOUNDS = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Dashboard:
    """One inspected feature with everything its dashboard shows."""

    layer: int
    language: str
    feature: int
    direction: str
    description: str
    samples: list[str]
    values: np.ndarray
    genders: list[str]
    captions: list[str]
    image_names: list[str]
    images: list[np.ndarray | None]
    """Thumbnails (THUMBNAIL x THUMBNAIL x 3 uint8); ``None`` where the image could not be read."""
    maps: np.ndarray | None
    """(top samples, side, side) activation over the image-token grid, or None without visual results."""
    hist_edges: np.ndarray
    hist_counts: np.ndarray
    """(language, gender, bin) counts of the per-sample activation."""
    hist_languages: list[str]
    hist_genders: list[str]

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.layer, self.language, self.feature)


def dashboards(
    interpret: xr.Dataset,
    visual: xr.Dataset | None,
    labels: Labels,
    images: Mapping[str, np.ndarray | None],
) -> list[Dashboard]:
    """Join the interpret and visual results entry by entry with the samples' labels and thumbnails.

    ``images`` maps an image path (as stored in the store's ``image``) to its thumbnail or ``None``.
    """
    row = {s: i for i, s in enumerate(labels.sample)}
    maps: dict[tuple[int, str, int], np.ndarray] = {}
    if visual is not None:
        for i, key in enumerate(_keys(visual)):
            maps[key] = np.asarray(visual["map"].values[i])
    out = []
    for i, key in enumerate(_keys(interpret)):
        top = [s for s in strings(interpret["top_sample"].values[i]) if s]
        rows = [row[s] for s in top]
        names = [str(labels.image[r]) for r in rows]
        out.append(
            Dashboard(
                layer=key[0],
                language=key[1],
                feature=key[2],
                direction=str(interpret["direction"].values[i]),
                description=str(interpret["description"].values[i]),
                samples=top,
                values=np.asarray(interpret["top_value"].values[i][: len(top)], dtype=float),
                genders=[str(labels.gender[r]) for r in rows],
                captions=[str(labels.captions[key[1]][r]).split("\n")[0] for r in rows],
                image_names=names,
                images=[images.get(n) for n in names],
                maps=maps[key][: len(top)] if key in maps else None,
                hist_edges=np.asarray(interpret["histogram_edges"].values[i], dtype=float),
                hist_counts=np.asarray(interpret["histogram"].values[i]),
                hist_languages=[str(v) for v in strings(interpret["hist_language"].values)],
                hist_genders=[str(v) for v in strings(interpret["gender"].values)],
            )
        )
    return out


def _keys(ds: xr.Dataset) -> list[tuple[int, str, int]]:
    return list(
        zip(
            (int(v) for v in ds["entry_layer"].values),
            (str(v) for v in strings(ds["entry_language"].values)),
            (int(v) for v in ds["entry_feature"].values),
            strict=True,
        )
    )


def _thumbnail(dash: Dashboard, j: int, vmax: float) -> hv.Overlay:
    image = dash.images[j] if j < len(dash.images) else None
    title = f"{dash.samples[j]} ({dash.genders[j]}) {dash.values[j]:.2g}" if j < len(dash.samples) else ""
    if image is None:  # placeholder: a grey square, the heatmap alone
        image = np.full((THUMBNAIL, THUMBNAIL, 3), 200, dtype=np.uint8)
        title += " [no image]" if j < len(dash.samples) else ""
    rgb = hv.RGB(image, bounds=_BOUNDS)
    parts = [
        styled(
            rgb,
            common={"xaxis": None, "yaxis": None, "title": title},
            bokeh={"frame_width": 150, "frame_height": 150, "toolbar": None, "fontsize": {"title": "9pt"}},
            mpl={"fig_size": 60, "fontsize": {"title": 8}},
        )
    ]
    if dash.maps is not None and j < len(dash.maps):
        heat = hv.Image(dash.maps[j], bounds=_BOUNDS, vdims="activation")
        parts.append(
            styled(
                heat,
                common={"cmap": "inferno", "alpha": 0.55, "clim": (0.0, vmax)},
                bokeh={"tools": ["hover"]},
            )
        )
    return hv.Overlay(parts)


def _histogram(dash: Dashboard, language_index: int) -> hv.Overlay:
    lang = dash.hist_languages[language_index]
    parts = []
    for g, gender in enumerate(dash.hist_genders):
        counts = dash.hist_counts[language_index, g]
        hist = hv.Histogram((dash.hist_edges, counts), kdims=["activation"], vdims=["samples"], label=gender)
        parts.append(
            styled(
                hist,
                common={"color": COLOURS.get(gender, COLOURS["neutral"]), "alpha": 0.5},
                bokeh={"line_alpha": 0.0},
            )
        )
    overlay = hv.Overlay(parts)
    return styled(
        overlay,
        # the same frame as a thumbnail: panels share grid columns, and a wider one would crop the images
        # (no y axis either: it would widen the grid column); counts show on hover
        common={"title": f"{lang}: male blue, female red", "show_legend": False, "yaxis": None},
        bokeh={
            "frame_width": 150,
            "frame_height": 150,
            "toolbar": None,
            "fontsize": {"title": "9pt"},
            "tools": ["hover"],
        },
        mpl={"fig_size": 60, "aspect": 1.0, "fontsize": {"title": 8}},
    )


def _vmax(dash: Dashboard) -> float:
    """Top of the heatmap colour scale of one feature (shared by its thumbnails)."""
    top = float(np.nanmax(dash.maps, initial=0.0)) if dash.maps is not None else 0.0
    return top if top > 0 else 1.0


def _figures(dashes: list[Dashboard]) -> tuple[Any, Any]:
    """One view per feature (a menu switches between them) and a static version of the first."""
    cols = min(max(len(d.samples) for d in dashes), 5)

    def view(d: Dashboard) -> hv.Layout:
        # thumbnails on the first row(s), histograms below
        panels = [_thumbnail(d, j, _vmax(d)) for j in range(len(d.samples))]
        panels += [_histogram(d, i) for i in range(len(d.hist_languages))]
        return hv.Layout(panels).cols(cols)

    interactive = Frames(
        ("feature",),
        {
            (f"layer {d.layer} {d.language} #{d.feature} ({d.direction})",): view(d).opts(
                shared_axes=False, backend="bokeh"
            )
            for d in dashes
        },
    )
    static = view(dashes[0])
    return interactive, static


def features_section(dashes: list[Dashboard], *, n_inspected: int | None = None) -> Section:
    """Dashboards of inspected features (a selector switches between them)."""
    n_inspected = len(dashes) if n_inspected is None else n_inspected
    items: list[Any] = [
        Text(
            f"{len(dashes)} of {n_inspected} inspected features (from `analyze interpret` and "
            "`analyze visual`). "
            "Thumbnails are the top samples by activation (title: sample, gender label, activation); the "
            "overlay is the feature's activation over the image-token grid (shared colour scale per feature)."
        )
    ]
    missing = sorted({n for d in dashes for n, im in zip(d.image_names, d.images, strict=True) if im is None})
    if missing:
        items.append(
            Notice(
                f"**{len(missing)} images could not be read** and are drawn as grey placeholders "
                "(heatmap only): "
                + ", ".join(f"`{n}`" for n in missing[:10])
                + (" ..." if len(missing) > 10 else "")
                + ". Check the images folder (`--images`, or the store's `images_dir`).",
                level="warning",
            )
        )
    if dashes:
        interactive, static = _figures(dashes)
        items.append(
            Figure(
                "feature_dashboards",
                "Top samples, image-token heatmaps and activation histograms "
                f"by gender; the PNG shows layer {dashes[0].layer} {dashes[0].language} feature "
                f"{dashes[0].feature}.",
                interactive,
                static,
            )
        )
        rows = [
            {
                "layer": d.layer,
                "language": d.language,
                "feature": d.feature,
                "rank": j + 1,
                "sample": s,
                "gender": g,
                "activation": v,
                "caption": c,
            }
            for d in dashes
            for j, (s, g, v, c) in enumerate(zip(d.samples, d.genders, d.values, d.captions, strict=True))
        ]
        descriptions = pd.DataFrame(
            [
                {"layer": d.layer, "language": d.language, "feature": d.feature, "description": d.description}
                for d in dashes
            ]
        )
        items += [
            Table(descriptions, "What each feature responds to", max_rows=MAX_DASHBOARDS),
            Table(pd.DataFrame(rows), "Top samples and their reference captions", max_rows=60),
        ]
    summary = {
        "shown": [
            {
                "layer": d.layer,
                "language": d.language,
                "feature": d.feature,
                "direction": d.direction,
                "samples": d.samples,
                "description": d.description,
            }
            for d in dashes
        ],
        "missing_images": missing,
    }
    return Section("features", "Feature dashboards", items, summary, status="partial" if missing else "ok")


def _once_per_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank the per-sample columns on a sample's later rows: one long caption per sample, not per row."""
    if "sample" not in frame:
        return frame
    out = frame.copy()
    repeat = out["sample"].eq(out["sample"].shift())
    for column in ("image", "gender", "caption"):
        if column in out:
            out[column] = out[column].astype(object).where(~repeat, "")
    return out


def qualitative_section(ds: xr.Dataset, images: Mapping[str, np.ndarray | None] | None = None) -> Section:
    """Per selected sample, its most active significant biased features, their interpretation and captions;
    ``images`` maps an image path to its thumbnail (drawn in the HTML table)."""
    # the columns in the order analyze qualitative writes its table, then anything else it stored
    names = [c for c in COLUMNS if c in ds.data_vars] + [
        str(v) for v in ds.data_vars if v not in COLUMNS and not is_label_code(ds, str(v))
    ]
    frame = pd.DataFrame(
        {
            name: strings(ds[name].values) if ds[name].dtype.kind in "OTU" else ds[name].values
            for name in names
        }
    )
    items: list[Any] = [
        Text(
            "Samples picked by `analyze qualitative`, with the significant biased features most active "
            "on them; a sample's image, gender and caption are shown on its first row."
        ),
        Table(_once_per_sample(frame), "Qualitative examples", max_rows=60, images=images or {}),
    ]
    summary = {"rows": len(frame), "samples": sorted({str(s) for s in frame.get("sample", [])})}
    return Section("qualitative", "Qualitative examples", items, summary)
