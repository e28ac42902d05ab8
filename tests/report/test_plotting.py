"""Confidence intervals in both backends: capped whiskers at exactly their bounds."""

from __future__ import annotations

import warnings

import holoviews as hv
import matplotlib.pyplot as plt
import numpy as np
from bokeh.models import TeeHead, Whisker
from matplotlib.colors import to_hex

from sae_store.report.plotting import intervals


def test_intervals_are_capped_whiskers_at_their_bounds() -> None:
    low, high = np.array([1.0, -2.0, np.nan]), np.array([2.5, -0.5, np.nan])
    bars = intervals([0, 1, 2], low, high, "layer", "d", "#d62728")
    assert isinstance(bars, hv.ErrorBars)

    fig = hv.render(bars, backend="matplotlib")
    try:
        ax = fig.axes[0]
        caps = [line for line in ax.lines if line.get_marker() == "_"]  # matplotlib's error-bar caps
        assert len(caps) == 2
        bottoms, tops = (np.asarray(c.get_ydata(), dtype=float) for c in caps)
        np.testing.assert_array_equal(bottoms, low[:2])  # the interval with NaN bounds is left out
        np.testing.assert_array_equal(tops, high[:2])
        assert {to_hex(c.get_markeredgecolor()) for c in caps} == {"#d62728"}
    finally:
        plt.close(fig)

    plot = hv.render(bars, backend="bokeh")
    (whisker,) = [r for r in plot.center if isinstance(r, Whisker)]
    assert isinstance(whisker.lower_head, TeeHead) and isinstance(whisker.upper_head, TeeHead)
    data = whisker.source.data
    np.testing.assert_array_equal(data["lower"], low[:2])
    np.testing.assert_array_equal(data["upper"], high[:2])


def test_intervals_without_any_bound_draw_nothing_and_warn_nothing() -> None:
    bars = intervals([0, 1], [np.nan, np.nan], [np.nan, np.nan], "layer", "d", "#d62728")
    assert len(bars) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = hv.render(hv.Curve([(0, 1.0), (1, 2.0)], "layer", "d") * bars, backend="matplotlib")
        plt.close(fig)
        hv.render(hv.Curve([(0, 1.0), (1, 2.0)], "layer", "d") * bars, backend="bokeh")
