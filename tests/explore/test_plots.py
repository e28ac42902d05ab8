"""The explorer's figures: what a large SAE's volcano keeps, and the image overlay."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from sae_store.explore import plots


def test_volcano_of_a_full_width_sae_keeps_significant_then_largest_effects():
    rng = np.random.default_rng(0)
    n = 20_480
    frame = pd.DataFrame({"feature": np.arange(n), "d": rng.normal(0, 0.2, n), "q": rng.uniform(0.2, 1, n)})
    frame.loc[:99, "q"] = 0.001  # 100 significant features with tiny effects
    frame.loc[:99, "d"] = 0.001
    points = plots.volcano(frame, layer=3, language="ar", alpha=0.05).dframe()
    assert len(points) == plots.MAX_POINTS
    assert set(range(100)) <= set(points["feature"])
    rest = frame.iloc[100:]
    cutoff = np.sort(rest["d"].abs().to_numpy())[::-1][plots.MAX_POINTS - 100 - 1]
    kept = points[points["feature"] >= 100]
    assert kept["d"].abs().min() >= cutoff
    assert set(points.loc[points["feature"] < 100, "side"]) == {"male"}


def test_overlay_png_blends_the_grid_over_the_image():
    image = np.full((32, 32, 3), 200, np.uint8)
    grid = np.zeros((4, 4))
    grid[0, 3] = 2.0  # top right image token
    png = plots.overlay_png(image, grid, vmax=2.0, size=64)
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    assert out.shape == (64, 64, 3)
    hot, cold = out[4, 60], out[60, 4]
    assert hot[0] > hot[2] and not np.array_equal(hot, cold)  # inferno's bright end is yellow
    assert abs(cold - (0.45 * 200)).max() <= 3  # inferno's dark end is near black: the image dims
