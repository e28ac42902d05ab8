"""Checks of a rendered matplotlib figure that a reader would notice: overlapping tick labels or
value labels, a fractional layer axis, and "nan" written anywhere."""

from __future__ import annotations

import re
from typing import Any

import holoviews as hv
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.text import Text

_NAN = re.compile(r"\bnan\b", re.IGNORECASE)


def figure_problems(obj: Any) -> list[str]:
    """What is wrong with the PNG rendering of the HoloViews object ``obj`` (empty: nothing)."""
    fig = hv.render(obj, backend="matplotlib")
    try:
        canvas = FigureCanvasAgg(fig)  # what save_png's savefig draws with
        canvas.draw()
        renderer = canvas.get_renderer()
        problems: list[str] = []
        for ax in fig.axes:
            for name, labels, title in (
                ("x", ax.get_xticklabels(), ax.get_xlabel()),
                ("y", ax.get_yticklabels(), ax.get_ylabel()),
            ):
                shown = [t for t in labels if t.get_visible() and t.get_text().strip()]
                boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in shown]
                for i, (ta, a) in enumerate(boxes):
                    for tb, b in boxes[i + 1 :]:
                        if a.overlaps(b):
                            problems.append(f"{name} tick labels {ta!r} and {tb!r} overlap")
                if "layer" in title.lower():
                    fractional = [t for t, _ in boxes if not re.fullmatch(r"[−-]?\d+", t.strip())]
                    if fractional:
                        problems.append(f"{name} axis {title!r} has non-integer ticks {fractional}")
            if "layer" in ax.get_xlabel().lower():
                problems += _points_away_from_layer_ticks(ax)
            cells = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_text().strip()]
            for i, (ta, a) in enumerate(cells):
                if any(a.overlaps(b) for _, b in cells[i + 1 :]):
                    problems.append(f"text {ta!r} in the axes overlaps another")
                    break
        for text in fig.findobj(Text):
            if isinstance(text, Text) and _NAN.search(text.get_text()):
                problems.append(f"text {text.get_text()!r} shows NaN")
        return problems
    finally:
        plt.close(fig)


def _points_away_from_layer_ticks(ax: Any) -> list[str]:
    """Points drawn far (over a quarter of the axes' width) from every layer tick read as unlabelled."""
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    if not ticks or hi <= lo:
        return []
    problems = []
    for collection in ax.collections:
        if not isinstance(collection, PathCollection):  # scatter markers; error bars are LineCollections
            continue
        for x, _ in collection.get_offsets():
            gap = min(abs(x - t) for t in ticks) / (hi - lo)
            if gap > 0.25:
                problems.append(f"a point at x={x:g} is {gap:.0%} of the axis away from every layer tick")
    return problems
