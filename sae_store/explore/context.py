"""Activations in context on the feature page: delphi's examples of one language (top activations, one
per activation quantile, random firing ones), each as its image with the feature's per-patch activation
over it and its most active patches cropped, and its tokens highlighted by activation (value on hover)."""

from __future__ import annotations

import html

import numpy as np
from PIL import Image

from sae_store.analyze import image_grid
from sae_store.autointerp.examples import draw_samples
from sae_store.data import load_image
from sae_store.explore import plots
from sae_store.explore.data import ExploreData, SampleTokens
from sae_store.explore.layout import RTL_LANGUAGES, link
from sae_store.roles import TokenRole

#: Examples drawn per page: top activations, activation quantiles, random firing samples.
N_TOP, N_QUANTILES, N_RANDOM = 3, 3, 2
#: Side of an example's image in pixels (a 16 x 16 patch grid stays readable).
IMAGE_SIZE = 224
#: Most active image patches cropped beside each image, and the side of each crop in pixels.
N_CROPS, CROP_SIZE = 3, 72
_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}
_KIND = {"top": "top activation", "random": "random firing sample"}
#: The style of highlighted tokens, examples and colour scales (once per page section).
STYLE = (
    "<style>.tok{border-radius:2px;padding:0 1px;white-space:pre-wrap}.tok.img{font-style:italic}"
    ".example{margin:6px 0 14px}.tokens{line-height:1.8;max-width:900px}.scale span{font-size:11px}"
    "</style>"
)


def draw(data: ExploreData, col: np.ndarray, feature: int) -> list[tuple[int, str]]:
    """(sample row, kind) of the examples shown, drawn as ``explain`` draws them (no held-out set)."""
    rng = np.random.default_rng(feature)
    picked = draw_samples(
        np.nan_to_num(col), np.isfinite(col), n_top=N_TOP, n_quantiles=N_QUANTILES, n_random=N_RANDOM,
        n_held=0, rng=rng,
    )  # fmt: skip
    return picked.shown


def visible_token(text: str) -> str:
    """A token whose characters are all whitespace drawn with visible marks (space, line break, tab)."""
    if text and not text.strip():
        return "".join(_VISIBLE.get(c, c) for c in text)
    return text


def _colour(value: float, vmax: float) -> str:
    alpha = 0.0 if vmax <= 0 else min(max(value / vmax, 0.0), 1.0)
    return f"rgba(255,120,0,{alpha:.2f})"


def token_html(data: ExploreData, t: SampleTokens, language: str, vmax: float) -> str:
    """The sample's prompt and caption tokens highlighted by the feature's activation, value on hover;
    the image tokens as one chip (their activations are drawn over the image)."""
    assert t.acts is not None
    parts, image_done = [], False
    image = t.roles == TokenRole.IMAGE
    for pos, (token_id, role) in enumerate(zip(t.ids, t.roles, strict=True)):
        if role == TokenRole.PAD:
            continue
        if role == TokenRole.IMAGE:
            if not image_done:
                top = float(t.acts[image].max(initial=0.0))
                parts.append(
                    f'<span class="tok img" style="background:{_colour(top, vmax)}" '
                    f'title="image, max of {int(image.sum())} tokens: {top:.3f}">[image]</span>'
                )
                image_done = True
            continue
        text = data.decode_token(int(token_id)) if data.decode_token else f"<{int(token_id)}>"
        value = float(t.acts[pos])
        parts.append(
            f'<span class="tok" style="background:{_colour(value, vmax)}" '
            f'title="{html.escape(repr(text))}: {value:.3f}">{html.escape(visible_token(text))}</span>'
        )
    direction = "rtl" if language in RTL_LANGUAGES else "ltr"
    return f'<div class="tokens" dir="{direction}" lang="{html.escape(language)}">{"".join(parts)}</div>'


def colour_scale(vmax: float, width: int = IMAGE_SIZE) -> str:
    """The overlay's colour scale (inferno, 0 to ``vmax``) as a bar with its ends labelled."""
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in plots.inferno_stops())
    return (
        f'<div class="scale" style="width:{width}px"><div style="height:10px;background:'
        f'linear-gradient(to right, {stops})"></div><span>0</span>'
        f'<span style="float:right">{vmax:.3g}</span></div>'
    )


def crops(image: np.ndarray | None, grid: np.ndarray | None) -> str:
    """The :data:`N_CROPS` most active patches of ``image``, cut out (a patch and its neighbours)."""
    if image is None or grid is None:
        return ""
    side = grid.shape[0]
    picture = Image.fromarray(image)
    cell = picture.width / side
    out = []
    for flat in np.argsort(-grid.ravel(), kind="stable")[:N_CROPS]:
        if grid.ravel()[flat] <= 0:
            break
        r, c = divmod(int(flat), side)
        box = (max(c - 1, 0) * cell, max(r - 1, 0) * cell, min(c + 2, side) * cell, min(r + 2, side) * cell)
        png = plots.png_bytes(picture.crop(box).resize((CROP_SIZE, CROP_SIZE)))
        out.append(plots.img_tag(png, alt=f"patch ({r}, {c}): {grid[r, c]:.3f}"))
    return "<br>".join(out)


def example_html(
    data: ExploreData, row: int, kind: str, t: SampleTokens, grid: np.ndarray | None, *, layer: int,
    feature: int, language: str, vmax: float, value: float,
) -> str:  # fmt: skip
    """One example: what it is (kind, sample, gender, max), its image, crops and highlighted tokens."""
    sid = str(data.labels.sample[row])
    title = _KIND.get(kind, kind.replace("quantile_", "activation quantile "))
    sample = link(sid, "sample", id=sid, layer=layer, feature=feature, language=language)
    head = f"<b>{html.escape(title)}</b>: {sample}, {data.labels.gender[row]}, max {value:.3f}"
    image = None
    if data.images_dir and data.image_tokens:
        image = load_image(data.images_dir / data.labels.image[row], IMAGE_SIZE)
    return activation_html(data, head, t, image, grid, language=language, vmax=vmax, alt=f"{sid} {language}")


def activation_html(
    data: ExploreData, head: str, t: SampleTokens, image: np.ndarray | None, grid: np.ndarray | None, *,
    language: str, vmax: float, alt: str,
) -> str:  # fmt: skip
    """``head`` above the image with the feature's per-patch activation over it (colour scale below),
    its most active patches cropped, and the highlighted tokens."""
    picture = ""
    if grid is not None or image is not None:
        png = plots.overlay_png(image, grid, vmax=vmax, size=IMAGE_SIZE)
        picture = (
            f'<td style="vertical-align:top">{plots.img_tag(png, alt=alt)}'
            f'{colour_scale(vmax)}</td><td style="vertical-align:top">{crops(image, grid)}</td>'
        )
    tokens = token_html(data, t, language, vmax) if t.acts is not None else ""
    return (
        f'<div class="example">{head}<table><tr>{picture}'
        f'<td style="vertical-align:top">{tokens}</td></tr></table></div>'
    )


def image_map(data: ExploreData, acts: np.ndarray | None, roles: np.ndarray) -> np.ndarray | None:
    """The feature's activation over the image's patch grid, or None without a whole image."""
    if acts is None or not data.image_tokens or int((roles == TokenRole.IMAGE).sum()) != data.image_tokens:
        return None
    return image_grid(acts, roles, data.image_tokens)


def examples_html(data: ExploreData, layer: int, feature: int, language: str, col: np.ndarray) -> str:
    """Every example of the page's language, one colour scale shared by all of them."""
    shown = draw(data, col, feature)
    tokens = [data.tokens(language, r, layer=layer, feature=feature) for r, _ in shown]
    grids = [image_map(data, t.acts, t.roles) for t in tokens]
    vmax = max((float(t.acts.max(initial=0.0)) for t in tokens if t.acts is not None), default=0.0) or 1.0
    parts = [
        example_html(
            data, r, kind, t, g, layer=layer, feature=feature, language=language, vmax=vmax,
            value=float(col[r]),
        )
        for (r, kind), t, g in zip(shown, tokens, grids, strict=True)
    ]  # fmt: skip
    return STYLE + "".join(parts)
