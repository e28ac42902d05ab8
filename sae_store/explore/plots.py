"""The explorer's figures (HoloViews on Bokeh); clicks that open another page are plain links in JS.

A click on a volcano point opens that feature's page through a Bokeh ``OpenURL`` callback in the
browser: no round trip to the server, and the page is an ordinary URL that can be shared.
"""

from __future__ import annotations

import base64
import bisect
import html
import io
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
from bokeh.models import OpenURL, TapTool
from matplotlib import colormaps
from PIL import Image

from sae_store.analyze import grid_side
from sae_store.report import COLOURS, language_colour
from sae_store.roles import TokenRole

#: Width of a full-width figure, in pixels.
WIDTH = 820
#: Points drawn per volcano: every significant feature, then the largest |d| of the rest.
MAX_POINTS = 4000


def _tap_opens(url: str) -> Any:
    def hook(plot: Any, element: Any) -> None:
        fig = plot.state
        fig.add_tools(TapTool(callback=OpenURL(url=url, same_tab=True)))

    return hook


def volcano(frame: pd.DataFrame, *, layer: int, language: str, alpha: float) -> hv.Points:
    """Cohen's d against -log10 q of one (layer, language); a click opens the feature's page.

    ``frame`` has columns ``feature``, ``d``, ``q``. Beyond :data:`MAX_POINTS` features, the
    significant ones and the largest |d| of the others are drawn (the browser stays fast).
    """
    f = frame.dropna(subset=["d", "q"]).copy()
    f["neglog10_q"] = -np.log10(np.clip(f["q"].to_numpy(float), 1e-300, 1.0))
    f["side"] = np.where(f["q"] > alpha, "n.s.", np.where(f["d"] > 0, "male", "female"))
    if len(f) > MAX_POINTS:
        keep = f["q"].le(alpha).astype(float) * 1e9 + f["d"].abs()
        f = f.loc[keep.nlargest(MAX_POINTS).index]
    url = f"?page=feature&layer={layer}&feature=@feature&language={language}"
    colours = {"male": COLOURS["male"], "female": COLOURS["female"], "n.s.": COLOURS["neutral"]}
    return hv.Points(
        f[["d", "neglog10_q", "feature", "q", "side"]],
        kdims=["d", "neglog10_q"],
        vdims=["feature", "q", "side"],
    ).opts(
        color="side",
        cmap=colours,
        size=6,
        alpha=0.7,
        width=WIDTH // 2 + 90,  # the legend's column beside the axes
        height=340,
        tools=["hover"],
        xlabel="Cohen's d (male - female)",
        ylabel="-log10 q",
        title=f"layer {layer}, {language}: click a point to open the feature",
        # beside the axes: inside, it covered the most significant points and took their clicks
        legend_position="right",
        hooks=[_tap_opens(url)],
    )


def agreement(frame: pd.DataFrame, a: str, b: str, *, layer: int) -> hv.Overlay:
    """Per-feature d in language ``a`` against language ``b``, with the line of equal effects (y = x);
    a click on a point opens the feature's page."""
    f = frame.dropna(subset=[f"d_{a}", f"d_{b}"])
    if len(f) > MAX_POINTS:
        f = f.loc[(f[f"d_{a}"].abs() + f[f"d_{b}"].abs()).nlargest(MAX_POINTS).index]
    url = f"?page=feature&layer={layer}&feature=@feature&language={a}"
    lim = float(np.nanmax(np.abs(f[[f"d_{a}", f"d_{b}"]].to_numpy()), initial=1.0)) * 1.05
    points = hv.Points(
        f[[f"d_{a}", f"d_{b}", "feature"]], kdims=[f"d_{a}", f"d_{b}"], vdims=["feature"]
    ).opts(size=5, alpha=0.6, color=COLOURS["targeted"], tools=["hover"], hooks=[_tap_opens(url)])
    diagonal = hv.Curve([(-lim, -lim), (lim, lim)], f"d_{a}", f"d_{b}").opts(
        color="black", alpha=0.4, line_dash="dashed"
    )
    return (points * diagonal).opts(
        width=WIDTH // 2,
        height=340,
        xlim=(-lim, lim),
        ylim=(-lim, lim),
        title=f"layer {layer}: d in {a} vs {b} (dashed: equal effects)",
    )


def histograms(values: dict[str, np.ndarray], *, title: str, xlabel: str) -> hv.Overlay:
    """Overlaid histograms of one feature's per-sample values, one per gender (shared bins)."""
    finite = [v[np.isfinite(v)] for v in values.values()]
    pooled = np.concatenate(finite) if finite else np.zeros(0)
    hi = float(pooled.max()) if pooled.size else 1.0
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, 21)
    layers = []
    for gender, fv in zip(values, finite, strict=True):
        counts, _ = np.histogram(fv, bins=edges)
        frac = counts / max(len(fv), 1)
        layers.append(
            hv.Histogram((edges, frac), kdims=[xlabel], vdims=["fraction"], label=gender).opts(
                color=COLOURS.get(gender, COLOURS["neutral"]), alpha=0.5, line_alpha=0
            )
        )
    return hv.Overlay(layers).opts(width=WIDTH // 2, height=240, title=title, legend_position="top_right")


def overlay_png(image: np.ndarray | None, grid: np.ndarray | None, *, vmax: float, size: int) -> bytes:
    """A PNG of the image with a feature's image-token grid as a translucent heatmap over it.

    Drawn with Pillow rather than as a Bokeh figure: a page shows many of them, and a PNG costs
    milliseconds where a figure costs a few hundred.
    """
    base = (
        Image.fromarray(image).resize((size, size))
        if image is not None
        else Image.new("RGB", (size, size), "grey")
    )
    if grid is not None:
        scaled = np.clip(np.asarray(grid, np.float64) / (vmax or 1.0), 0.0, 1.0)
        heat = (colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8)
        layer = Image.fromarray(heat).resize((size, size), Image.Resampling.NEAREST)
        base = Image.blend(base.convert("RGB"), layer, 0.55 if image is not None else 1.0)
    return png_bytes(base)


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def inferno_stops(n: int = 6) -> list[tuple[int, int, int]]:
    """``n`` colours of the overlays' colour map (inferno), low to high, as RGB bytes."""
    return [tuple(int(c * 255) for c in colormaps["inferno"](i / (n - 1))[:3]) for i in range(n)]  # type: ignore[misc]


def img_tag(png: bytes, *, alt: str) -> str:
    """An ``<img>`` holding ``png`` inline (no request leaves the page)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" title="{html.escape(alt)}">'


#: Least room in pixels between two labelled tokens on the token axis (a turned label's line height).
TICK_ROOM = 14


def readable_token(label: str) -> str:
    """A token label that draws as one line: line breaks and tabs as ``\\n`` and ``\\t``, a token of
    spaces alone quoted."""
    text = label.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return repr(text) if not text.strip() else text


def labelled_tokens(roles: np.ndarray, width: int = WIDTH) -> list[int]:
    """Positions whose labels the token axis shows: as many as fit :data:`TICK_ROOM` apart, text and
    special tokens first, then the first image token of each row of the grid, then the other ones.

    ``roles`` are the token roles of the tokens drawn, in order.
    """
    roles = np.asarray(roles)
    n = len(roles)
    frame_width = width - 70.0  # the y axis and the toolbar take the rest
    gap = max(1, int(np.ceil(TICK_ROOM * max(n, 1) / frame_width)))
    image = np.flatnonzero(roles == TokenRole.IMAGE)
    side = grid_side(len(image)) if len(image) else 1
    first_of_row = image[::side]
    order = [*np.flatnonzero(roles != TokenRole.IMAGE), *first_of_row, *np.setdiff1d(image, first_of_row)]
    kept: list[int] = []
    for p in (int(p) for p in order):
        at = bisect.bisect_left(kept, p)
        if (at == 0 or p - kept[at - 1] >= gap) and (at == len(kept) or kept[at] - p >= gap):
            kept.insert(at, p)
    return kept


def token_bars(
    labels: list[str], acts: np.ndarray, roles: np.ndarray, *, title: str, language: str
) -> hv.Bars:
    """A feature's activation at each (non-padding) token of one sample, in token order.

    Every bar has its token on hover; the axis labels those of :func:`labelled_tokens`, so that no
    two labels overlap however many tokens the prompt has.
    """
    tokens = [f"{i}:{readable_token(t)}" for i, t in enumerate(labels)]
    shown = set(labelled_tokens(roles))
    hidden = {t: "" for i, t in enumerate(tokens) if i not in shown}

    def hide_labels(plot: Any, element: Any) -> None:
        plot.state.xaxis[0].major_label_overrides = hidden

    frame = pd.DataFrame({"token": tokens, "activation": acts})
    return hv.Bars(frame, kdims=["token"], vdims=["activation"]).opts(
        width=WIDTH,
        height=280,
        color=language_colour(language),
        xrotation=90,
        title=title,
        tools=["hover"],
        hooks=[hide_labels],
    )


def density(log10_freq: np.ndarray, marked: float | None, *, title: str) -> hv.Overlay:
    """Histogram of the log10 firing frequency of every feature that fires, with ``marked`` (the page's
    feature; None when it never fires) as a vertical line."""
    values = log10_freq[np.isfinite(log10_freq)]
    lo = float(values.min()) if values.size else -6.0
    edges = np.linspace(min(lo, marked if marked is not None else lo), 0.0, 41)
    counts, _ = np.histogram(values, bins=edges)
    hist = hv.Histogram((edges, counts), kdims=["log10 firing frequency"], vdims=["features"]).opts(
        color=COLOURS["neutral"], line_alpha=0, tools=["hover"]
    )
    layers: list[Any] = [hist]
    if marked is not None:
        layers.append(hv.VLine(marked).opts(color=COLOURS["targeted"], line_width=2))
    return hv.Overlay(layers).opts(width=WIDTH // 2, height=240, title=title)
