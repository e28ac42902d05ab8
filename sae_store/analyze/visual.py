"""``analyze visual``: where on the image a feature fires, as maps over the image-token grid.

Gemma 3 turns an image into sqrt(n) x sqrt(n) soft tokens (16 x 16 = 256) laid out row by row;
a feature's activation at those tokens is a coarse map of the image. Maps are returned as arrays
(stored in the ``analysis/visual`` group) and drawn as heatmaps over the resized image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sae_store.errors import SaeStoreError
from sae_store.roles import TokenRole


def grid_side(image_tokens: int) -> int:
    """Side of the square image-token grid; refuses counts that are not perfect squares."""
    side = math.isqrt(image_tokens)
    if side * side != image_tokens:
        raise SaeStoreError(
            f"image_tokens={image_tokens} is not a square grid; cannot map tokens onto the image"
        )
    return side


def image_grid(acts_T: np.ndarray, roles_T: np.ndarray, image_tokens: int) -> np.ndarray:
    """(side, side) activation of one sample's image tokens, in the order the model laid them out."""
    pos = np.flatnonzero(roles_T == TokenRole.IMAGE)
    if pos.size != image_tokens:
        raise SaeStoreError(
            f"a sample has {pos.size} image tokens but the store records {image_tokens} per image; "
            "its token roles do not describe one image"
        )
    side = grid_side(image_tokens)
    return np.asarray(acts_T[pos], dtype=np.float32).reshape(side, side)


def feature_maps(
    token_acts_KkT: np.ndarray, roles_KkT: np.ndarray, image_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grids of every (feature, top sample) and each feature's mean grid over its top samples.

    Returns
    -------
    maps : numpy.ndarray
        (K, k, side, side).
    mean : numpy.ndarray
        (K, side, side).
    """
    side = grid_side(image_tokens)
    K, k = token_acts_KkT.shape[:2]
    maps = np.zeros((K, k, side, side), dtype=np.float32)
    for i in range(K):
        for j in range(k):
            maps[i, j] = image_grid(token_acts_KkT[i, j], roles_KkT[i, j], image_tokens)
    mean = maps.mean(axis=1) if k else np.zeros((K, side, side), dtype=np.float32)
    return maps, mean


def render_feature(
    out: Path,
    maps: np.ndarray,
    mean_map: np.ndarray,
    images: Sequence[np.ndarray | None],
    titles: Sequence[str],
    heading: str,
) -> Path:
    """Draw each top sample's heatmap over its image, plus the mean map, into one PNG.

    All panels share one colour scale (0 to the largest activation) so they can be compared.
    """
    k = maps.shape[0]
    cols = k + 1
    # a fixed layout: the constrained layout engine tripled the drawing time
    fig = Figure(figsize=(2.0 * cols + 0.8, 2.5))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    fig.subplots_adjust(left=0.01, right=1 - 0.9 / (2.0 * cols + 0.8), top=0.8, bottom=0.02, wspace=0.05)
    vmax = float(max(maps.max(initial=0.0), mean_map.max(initial=0.0))) or 1.0
    mappable = None
    for j in range(k):
        ax = axes[j]
        img = images[j]
        size = img.shape[0] if img is not None else 224
        if img is not None:
            ax.imshow(img, extent=(0, size, size, 0))
        else:
            ax.text(size / 2, size / 2, "image missing", ha="center", va="center", fontsize=7, zorder=3,
                    bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})  # fmt: skip
        mappable = ax.imshow(
            maps[j],
            cmap="inferno",
            alpha=0.55 if img is not None else 1.0,
            vmin=0,
            vmax=vmax,
            extent=(0, size, size, 0),
            interpolation="bilinear",
        )
        ax.set_title(titles[j], fontsize=7)
        ax.set_axis_off()
    ax = axes[k]
    mappable = ax.imshow(mean_map, cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(f"mean of top {k}", fontsize=7)
    ax.set_axis_off()
    bar = fig.add_axes((1 - 0.7 / (2.0 * cols + 0.8), 0.1, 0.12 / (2.0 * cols + 0.8), 0.65))
    fig.colorbar(mappable, cax=bar, label="activation")
    fig.suptitle(heading, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out
