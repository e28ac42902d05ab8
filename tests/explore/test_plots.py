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


def _bokeh(obj):
    import holoviews as hv

    import sae_store.report.plotting  # noqa: F401  (the Bokeh backend)

    return hv.render(obj, backend="bokeh")


def test_volcano_legend_sits_beside_the_axes_not_over_the_points():
    frame = pd.DataFrame({"feature": range(3), "d": [-2.0, 0.1, 2.0], "q": [1e-9, 0.9, 1e-9]})
    fig = _bokeh(plots.volcano(frame, layer=1, language="en", alpha=0.05))
    legends = [r for r in fig.right if type(r).__name__ == "Legend"]
    assert len(legends) == 1 and not [r for r in fig.center if type(r).__name__ == "Legend"]
    assert legends[0].items[0].label.field == "color"  # one entry per side: male, female, n.s.


def test_agreement_draws_the_line_of_equal_effects():
    frame = pd.DataFrame({"feature": range(3), "d_en": [-1.0, 0.5, 2.0], "d_ar": [-0.5, 0.4, 1.0]})
    overlay = plots.agreement(frame, "en", "ar", layer=2)
    points, diagonal = overlay
    assert len(points) == 3
    np.testing.assert_allclose(diagonal.array(), [[-2.1, -2.1], [2.1, 2.1]])


def test_token_labels_that_fit_without_overlapping_text_tokens_first():
    from sae_store.roles import TokenRole

    # Gemma 3's prompt: a few special and text tokens, 256 image tokens, then the text
    roles = np.array([TokenRole.SPECIAL] * 3 + [TokenRole.IMAGE] * 256 + [TokenRole.TEXT] * 12)
    shown = plots.labelled_tokens(roles)
    room = (plots.WIDTH - 70) / len(roles)  # pixels per token on the axis
    assert shown == sorted(shown) and min(np.diff(shown)) * room >= plots.TICK_ROOM
    assert len(shown) >= (plots.WIDTH - 70) // plots.TICK_ROOM // 2  # the room is used
    text, rows = 3 + 256, set(range(3, 3 + 256, 16))
    assert {0, text} <= set(shown)  # the first special token, the first text token after the image
    assert len(rows & set(shown)) >= 12  # then the first image token of most grid rows
    few = np.array([TokenRole.SPECIAL, TokenRole.TEXT, TokenRole.TEXT, TokenRole.IMAGE])
    assert plots.labelled_tokens(few) == [0, 1, 2, 3]  # all, when all fit


def test_token_bars_label_one_line_per_token_and_hide_the_labels_that_do_not_fit():
    from sae_store.roles import TokenRole

    assert plots.readable_token("\n") == "\\n" and plots.readable_token(" ") == "' '"
    assert plots.readable_token("ser\n") == "ser\\n"
    roles = np.array([TokenRole.TEXT] * 200)
    labels = [f"t{i}" for i in range(200)]
    fig = _bokeh(plots.token_bars(labels, np.ones(200), roles, title="t", language="ar"))
    hidden = fig.xaxis[0].major_label_overrides
    shown = [i for i in range(200) if f"{i}:t{i}" not in hidden]
    assert shown == plots.labelled_tokens(roles) and all(v == "" for v in hidden.values())
