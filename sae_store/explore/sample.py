"""The sample page: the image, captions in both languages, the most active features per layer, and
one chosen feature's activation at every token."""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from sae_store.analyze import grid_side, token_label
from sae_store.data import load_image
from sae_store.explore import plots
from sae_store.explore.data import ExploreData
from sae_store.explore.feature import image_map, no_sae
from sae_store.explore.layout import html_pane, link, table, text_html
from sae_store.explore.overview import features_missing
from sae_store.roles import TokenRole
from sae_store.store.schema import FEATURE_MAX

#: Most active features listed per layer.
TOP_FEATURES = 5
_IMAGE_SIZE = 224


def sample_page(
    data: ExploreData, sample_id: str, language: str, layer: int | None, feature: int | None
) -> list[Any]:
    """The sample page's sections; ``layer`` and ``feature`` choose the per-token view."""
    i = data.sample_index(sample_id)
    if feature is not None and layer is not None:
        data.check_feature(layer, feature)
    caps = data.captions(i)
    rows = [
        [lang, text_html(c["reference"], lang), text_html(c.get("generated", "-"), lang)]
        for lang, c in caps.items()
    ]
    out: list[Any] = [
        html_pane(f"gender label: <b>{data.labels.gender[i]}</b> &nbsp; image: {data.labels.image[i]}"),
        html_pane(table(["language", "reference caption", "generated caption"], rows, raw=True)),
    ]
    if data.features is None:
        out.append(features_missing(data))
        png = plots.overlay_png(_image(data, i), None, vmax=1.0, size=_IMAGE_SIZE)
        out.append(html_pane(plots.img_tag(png, alt=sample_id)))
        return out
    top = _top_features(data, i, language)
    if feature is None or layer is None:
        layer, feature = top[1] if top[1] is not None else (data.layers[-1], 0)
    # the table takes the width the token view leaves, and wraps: the page never scrolls sideways
    tokens = _tokens(data, i, sample_id, language, layer, feature)
    out.append(pn.Row(tokens, html_pane(top[0], sizing_mode="stretch_width"), sizing_mode="stretch_width"))
    return out


def _image(data: ExploreData, i: int) -> np.ndarray | None:
    return load_image(data.images_dir / data.labels.image[i], _IMAGE_SIZE) if data.images_dir else None


def _top_features(data: ExploreData, i: int, language: str) -> tuple[str, tuple[int, int] | None]:
    """A table of the most active features per layer (by max over tokens), and the strongest of all."""
    rows, best, best_value = [], None, -np.inf
    sid = str(data.labels.sample[i])
    for layer in data.layers:
        row = data.sample_row(FEATURE_MAX, layer, language, i)
        if row is None:
            rows.append([str(layer), "not encoded"])
            continue
        order = np.argsort(-row, kind="stable")[:TOP_FEATURES]
        cells = [
            link(f"{int(f)} ({row[f]:.2f})", "feature", layer=layer, feature=int(f), language=language)
            + " "
            + link("tokens", "sample", id=sid, layer=layer, feature=int(f), language=language)
            for f in order
            if row[f] > 0
        ]
        rows.append([str(layer), " &middot; ".join(cells) or "none active"])
        if order.size and row[order[0]] > best_value:
            best, best_value = (layer, int(order[0])), float(row[order[0]])
    header = ["layer", f"most active features ({language}): feature (max) and its tokens"]
    return table(header, rows, raw=True), best


def _tokens(data: ExploreData, i: int, sample_id: str, language: str, layer: int, feature: int) -> pn.Column:
    t = data.tokens(language, i, layer=layer, feature=feature)
    grid = image_map(data, t.acts, t.roles)
    vmax = float(np.nanmax(grid)) if grid is not None else 1.0
    title = f"layer {layer} feature {feature} ({language})"
    items: list[Any] = [
        pn.pane.Markdown("### " + link(title, "feature", layer=layer, feature=feature, language=language)),
        html_pane(
            plots.img_tag(
                plots.overlay_png(_image(data, i), grid, vmax=vmax, size=_IMAGE_SIZE), alt=sample_id
            )
        ),
    ]
    if t.acts is None:
        items.append(no_sae(data, layer))
        return pn.Column(*items)
    real = np.flatnonzero(t.roles != TokenRole.PAD)
    image_pos = np.flatnonzero(t.roles == TokenRole.IMAGE)
    first = int(image_pos[0]) if image_pos.size else 0
    side = grid_side(data.image_tokens) if data.image_tokens else 1
    labels = [
        token_label(int(t.ids[p]), int(t.roles[p]), int(p), first, side, data.decode_token) for p in real
    ]
    items.append(
        pn.pane.HoloViews(
            plots.token_bars(
                labels, t.acts[real], t.roles[real], title=f"{title} at each token", language=language
            )
        )
    )
    return pn.Column(*items)
