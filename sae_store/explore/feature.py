"""The feature page: one (layer, feature) in both languages, from statistics to where it fires."""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from sae_store.analyze import firing_tokens, grid_side, image_grid
from sae_store.data import load_image
from sae_store.explore import plots
from sae_store.explore.data import ExploreData
from sae_store.explore.layout import html_pane, link, missing, table
from sae_store.roles import TokenRole
from sae_store.store import schema as S
from sae_store.store.schema import FEATURE_MAX, FEATURE_MEAN

#: Top samples drawn with their image per language (each one is encoded with the SAE).
TOP_SAMPLES = 4
_STATS = ("d", "q", "ci_low", "ci_high", "male_mean", "female_mean", "male_freq", "female_freq")
_IMAGE_SIZE = 96


def feature_page(data: ExploreData, layer: int, feature: int, language: str) -> list[Any]:
    """The feature page's sections (``language`` is the one links from here keep)."""
    data.check_feature(layer, feature)
    if data.features is None:
        return [
            missing("No SAE features are encoded yet", f"sae-store encode {data.store.path} --saes SAE_DIR")
        ]
    return [
        *_statistics(data, layer, feature),
        *_histograms(data, layer, feature),
        *_top_samples(data, layer, feature),
        *_interventions(data, layer, feature),
        *_neighbours(data, layer, feature, language),
    ]


def _statistics(data: ExploreData, layer: int, feature: int) -> list[Any]:
    bias = data.analysis("bias")
    out: list[Any] = [pn.pane.Markdown("### Statistics")]
    if bias is None or layer not in bias[S.LAYER].values:
        out.append(missing("No bias results for this layer", f"sae-store analyze bias {data.store.path}"))
    else:
        b = bias.sel({S.LAYER: layer}).isel({S.FEATURE: feature})
        rows = [[lang, *(float(b[v].sel({S.LANGUAGE: lang})) for v in _STATS)] for lang in data.languages]
        out.append(html_pane(table(["language", *_STATS], rows)))
    cl = data.analysis("crosslingual")
    if cl is not None and layer in cl[S.LAYER].values:
        c = cl.sel({S.LAYER: layer}).isel({S.FEATURE: feature})
        b_lang = data.languages[1]
        matched = f"matched_{b_lang}_feature"
        if matched in c:
            other = int(c[matched])
            out.append(
                html_pane(
                    f"Matched feature in the {b_lang} SAE: "
                    + link(f"{other}", "feature", layer=layer, feature=other, language=b_lang)
                    + f" (decoder cosine {float(c['match_cosine']):.3f}); paired r {float(c['paired_r']):.3f}"
                )
            )
        else:
            out.append(
                html_pane(
                    f"One SAE encodes both languages: feature {feature} is the same direction in each "
                    f"(paired correlation across samples r = {float(c['paired_r']):.3f})."
                )
            )
    return out


def _histograms(data: ExploreData, layer: int, feature: int) -> list[Any]:
    genders = data.labels.gender[: data.n_samples]
    figs = []
    for lang in data.languages:
        col = data.feature_column(FEATURE_MEAN, layer, lang, feature)
        values = {g: col[genders == g] for g in ("male", "female")}
        figs.append(
            pn.pane.HoloViews(
                plots.histograms(
                    values, title=f"{lang}: mean activation per sample", xlabel="mean activation"
                )
            )
        )
    return [pn.pane.Markdown("### Activation by gender and language"), pn.Row(*figs)]


def _top_samples(data: ExploreData, layer: int, feature: int) -> list[Any]:
    columns = []
    firing_rows: list[list[Any]] = []
    for lang in data.languages:
        col = data.feature_column(FEATURE_MAX, layer, lang, feature)
        order = [int(i) for i in np.argsort(-np.nan_to_num(col, nan=-np.inf), kind="stable")[:TOP_SAMPLES]]
        order = [i for i in order if np.isfinite(col[i])]
        tokens = [data.tokens(lang, i, layer=layer, feature=feature) for i in order]
        grids = [image_map(data, t.acts, t.roles) for t in tokens]
        vmax = max((float(np.nanmax(g)) for g in grids if g is not None), default=1.0)
        cells = []
        for i, t, g in zip(order, tokens, grids, strict=True):
            sid = str(data.labels.sample[i])
            image = (
                load_image(data.images_dir / data.labels.image[i], _IMAGE_SIZE) if data.images_dir else None
            )
            png = plots.overlay_png(image, g, vmax=vmax, size=_IMAGE_SIZE)
            cells.append(
                plots.img_tag(png, alt=f"{sid} {lang}")
                + f"<br>{link(sid, 'sample', id=sid, layer=layer, feature=feature, language=lang)}"
                + f"<br>{data.labels.gender[i]}, max {col[i]:.2f}"
            )
            if t.acts is not None:
                side = grid_side(data.image_tokens) if data.image_tokens else 1
                for tok in firing_tokens(t.acts, t.roles, t.ids, side, data.decode_token):
                    firing_rows.append([lang, sid, tok["role"], tok["token"], f"{tok['activation']:.3f}"])
        row = "".join(f'<td style="vertical-align:top">{c}</td>' for c in cells)
        columns.append(html_pane(f"<b>{lang}</b><table><tr>{row}</tr></table>"))
    out: list[Any] = [
        pn.pane.Markdown("### Top samples (image-token activations over the image)"),
        pn.Row(*columns),
    ]
    if not data.saes.has(layer):
        out.append(
            missing(
                f"No SAE for layer {layer}: token activations cannot be computed",
                f"sae-store train {data.store.path} --layer {layer} --out SAE_DIR",
            )
        )
    elif firing_rows:
        out.append(pn.pane.Markdown("### Tokens where it fires"))
        out.append(html_pane(table(["language", "sample", "role", "token", "activation"], firing_rows)))
    return out


def image_map(data: ExploreData, acts: np.ndarray | None, roles: np.ndarray) -> np.ndarray | None:
    if acts is None or not data.image_tokens or int((roles == TokenRole.IMAGE).sum()) != data.image_tokens:
        return None
    return image_grid(acts, roles, data.image_tokens)


def _interventions(data: ExploreData, layer: int, feature: int) -> list[Any]:
    rows = []
    for key, by_layer in data.interventions.items():
        summary = by_layer.get(layer)
        if summary is None or feature not in summary.get("features", []):
            continue
        for lang, entry in summary.get("languages", {}).items():
            ci = entry.get("differential_ci") or [None, None]
            rows.append(
                [
                    key,
                    summary.get("mode"),
                    len(summary["features"]),
                    lang,
                    entry.get("differential"),
                    ci[0],
                    ci[1],
                ]
            )
    if not rows:
        return [
            pn.pane.Markdown("### Interventions"),
            html_pane(f"No intervention on layer {layer} includes feature {feature}."),
        ]
    header = ["experiment", "mode", "features edited", "language", "differential effect", "CI low", "CI high"]
    return [pn.pane.Markdown("### Interventions involving this feature"), html_pane(table(header, rows))]


def _neighbours(data: ExploreData, layer: int, feature: int, language: str) -> list[Any]:
    if not data.saes.has(layer):
        return []
    nb = data.saes.neighbours(layer, feature)
    rows = [
        [link(str(int(f)), "feature", layer=layer, feature=int(f), language=language), f"{c:.3f}"]
        for f, c in zip(nb.features, nb.cosine, strict=True)
    ]
    return [
        pn.pane.Markdown("### Neighbouring features (decoder cosine)"),
        html_pane(table(["feature", "cosine"], rows, raw=True)),
    ]
