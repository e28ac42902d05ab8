"""Checks of a rendered matplotlib figure that a reader would notice: overlapping tick labels or
value labels, a fractional layer axis, a legend drawn over data, an axis label or title running into
another panel, and "nan" written anywhere. (The page's Bokeh figures and tables are checked in the
browser: ``browser.LAYOUT_JS``.)"""

from __future__ import annotations

import re
from typing import Any

import holoviews as hv
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.lines import Line2D
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
            problems += _legend_over_data(ax, renderer)
            cells = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_text().strip()]
            for i, (ta, a) in enumerate(cells):
                if any(a.overlaps(b) for _, b in cells[i + 1 :]):
                    problems.append(f"text {ta!r} in the axes overlaps another")
                    break
        problems += _labels_into_other_panels(fig, renderer)
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


def _legend_over_data(ax: Any, renderer: Any) -> list[str]:
    """A legend inside the axes that covers a marker, an error bar or a data line (reference lines
    spanning the whole axes, such as y = 0, do not count)."""
    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    box = legend.get_window_extent(renderer)
    if not box.overlaps(ax.get_window_extent(renderer)):
        return []  # beside the axes
    covered = []
    for artist in ax.collections:
        if isinstance(artist, PathCollection):
            xy = artist.get_offset_transform().transform(artist.get_offsets())
            if any(box.contains(x, y) for x, y in xy):
                covered.append("a marker")
        elif isinstance(artist, LineCollection):
            paths = [artist.get_transform().transform_path(p) for p in artist.get_paths()]
            if any(p.intersects_bbox(box, filled=False) for p in paths):
                covered.append("an error bar")
    for line in ax.lines:
        if isinstance(line, Line2D) and len(line.get_xydata()) > 2:
            path = line.get_transform().transform_path(line.get_path())
            if path.intersects_bbox(box, filled=False):
                covered.append(f"the line {line.get_label()!r}")
    return [f"the legend covers {what}" for what in dict.fromkeys(covered)]


def _labels_into_other_panels(fig: Any, renderer: Any) -> list[str]:
    """An axis label or title of one panel of a layout that overlaps another panel (its axes or its own
    labels): in a grid of panels a label too long for its panel runs into the next one."""
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    labels = {
        id(ax): [
            (kind, t)
            for kind, t, shown in (
                ("title", ax.title, True),
                ("x label", ax.xaxis.label, ax.xaxis.get_visible()),
                ("y label", ax.yaxis.label, ax.yaxis.get_visible()),
            )
            if shown and t.get_visible() and t.get_text().strip()
        ]
        for ax in panels
    }
    problems = []
    for ax in panels:
        for kind, text in labels[id(ax)]:
            box = text.get_window_extent(renderer)
            for other in panels:
                if other is ax:
                    continue
                hit = box.overlaps(other.get_window_extent(renderer)) or any(
                    box.overlaps(t.get_window_extent(renderer)) for _, t in labels[id(other)]
                )
                if hit:
                    problems.append(
                        f"the {kind} {text.get_text()!r} of panel {ax.get_title()!r} runs into panel "
                        f"{other.get_title()!r}"
                    )
    return problems
