"""HoloViews with two backends: Bokeh for the interactive page, matplotlib for the PNGs.

Options given with ``.opts()`` apply to one backend only, so every figure is styled twice through
:func:`styled`. Importing this module loads both plotting backends (no notebook output, no browser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import holoviews as hv

# the plotting modules register the two backends (Bokeh for the page, matplotlib for the PNGs)
import holoviews.plotting.bokeh
import holoviews.plotting.mpl
import matplotlib.pyplot as plt
import numpy as np

from sae_store.report.section import Figure

hv.Store.current_backend = "bokeh"

#: Colours used for the same meaning everywhere in the report.
COLOURS = {
    "male": "#1f77b4",
    "female": "#d62728",
    "neutral": "#9e9e9e",
    "en": "#2a9d8f",
    "ar": "#e76f51",
    "random": "#8d8d8d",
    "targeted": "#6a3d9a",
}
#: Width of a full-width interactive figure, in pixels.
WIDTH = 900
#: Figure size of a PNG in matplotlib's units (percent of its default size).
FIG_SIZE = 160


def layer_ticks(layers: Any, most: int = 17) -> list[int]:
    """Integer ticks for a layer axis: every layer, or every n-th so that at most ``most`` show."""
    values = sorted({int(v) for v in layers})
    step = -(-len(values) // most) if values else 1
    return values[::step]


def language_colour(language: str) -> str:
    """Colour of a language's curves (grey for languages without a fixed colour)."""
    return COLOURS.get(language, COLOURS["neutral"])


def styled(
    obj: Any,
    *,
    common: dict[str, Any] | None = None,
    bokeh: dict[str, Any] | None = None,
    mpl: dict[str, Any] | None = None,
) -> Any:
    """Apply ``common`` options to both backends, plus the backend-specific ones."""
    common = common or {}
    obj = obj.opts(**common, **(bokeh or {}), backend="bokeh")
    return obj.opts(**common, **(mpl or {}), backend="matplotlib")


def figure(
    name: str,
    caption: str,
    obj: Any,
    *,
    common: dict[str, Any] | None = None,
    bokeh: dict[str, Any] | None = None,
    mpl: dict[str, Any] | None = None,
) -> Figure:
    """A :class:`Figure` of ``obj`` styled (:func:`styled`) for the HTML page and for the PNG."""
    return Figure(
        name,
        caption,
        styled(obj.clone(), common=common, bokeh=bokeh),
        styled(obj.clone(), common=common, mpl=mpl),
    )


def line_style(obj: Any, colour: str, *, dash: str | None = None, alpha: float = 1.0) -> Any:
    """Colour (and dash: ``"dashed"``, ``"dotted"``) of a Curve, HLine or Segments in both backends."""
    bokeh: dict[str, Any] = {} if dash is None else {"line_dash": dash}
    mpl: dict[str, Any] = {} if dash is None else {"linestyle": dash}
    return styled(obj, common={"color": colour, "alpha": alpha}, bokeh=bokeh, mpl=mpl)


def intervals(x: Any, low: Any, high: Any, xdim: Any, ydim: Any, colour: str) -> Any:
    """Vertical whiskers with caps from ``low`` to ``high`` at each ``x``: confidence intervals.

    Drawn from the bounds alone (error bars based at ``low`` that reach up by ``high - low``), not
    around the estimate, so an interval need not be symmetric about its point. An interval with a NaN
    bound is left out.
    """
    x = np.asarray(x, dtype=float)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    drawn = np.isfinite(low) & np.isfinite(high)  # (HoloViews' range of all-NaN bars warns)
    x, low, high = x[drawn], low[drawn], high[drawn]
    bars = hv.ErrorBars(
        (x, low, np.zeros_like(low), high - low), kdims=[xdim], vdims=[ydim, "below", "above"]
    )
    # matplotlib's error bars take their colour as "edgecolor" (HoloViews drops a plain colour string)
    return styled(
        bars,
        bokeh={"color": colour, "line_width": 2},
        mpl={"edgecolor": colour, "elinewidth": 1.5, "capsize": 4, "capthick": 1.5},
    )


def save_png(obj: Any, path: Path, *, dpi: int = 110) -> Path:
    """Render ``obj`` with the matplotlib backend (Agg, no browser) and save it as a PNG."""
    if isinstance(obj, hv.Layout | hv.NdLayout):
        obj = obj.opts(sublabel_format="", backend="matplotlib")  # no "A", "B" panel letters over the labels
    fig = hv.render(obj, backend="matplotlib")
    try:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
