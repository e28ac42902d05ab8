"""Bokeh models of figures: a plain figure, or :class:`~sae_store.report.section.Frames` with widgets.

Each view of a ``Frames`` is rendered once; a slider (consecutive integers, e.g. layers) or a menu
per key dimension and a small ``CustomJS`` callback show the view whose key matches the widgets.
Everything runs in the browser from the saved file: no server, no Python state embedding.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
from bokeh.layouts import column, row
from bokeh.models import CustomJS, Div, LayoutDOM, Select, Slider  # type: ignore[attr-defined]

from sae_store.report.section import Frames

# Key of the widgets' current values ("|"-joined), then show the matching view and hide the others.
_SWITCH_JS = """
const key = widgets.map((w) => w.type === 'Slider' ? String(Math.round(w.value)) : w.value).join('|');
const at = keys.indexOf(key);
views.forEach((v, i) => { v.visible = (i === at); });
missing.visible = (at === -1);
"""


def render(obj: Any) -> LayoutDOM:
    """The Bokeh model of a HoloViews object, or of :class:`Frames` with their widgets."""
    if isinstance(obj, Frames):
        return _switcher(obj)
    model: LayoutDOM = hv.render(obj, backend="bokeh")
    return model


def _is_int_run(values: list[Any]) -> bool:
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return len(ints) == len(values) > 1 and sorted(ints) == list(range(min(ints), max(ints) + 1))


def _widget(name: str, values: list[Any]) -> Slider | Select:
    if _is_int_run(values):
        return Slider(title=name, start=min(values), end=max(values), value=values[0], step=1, width=300)
    return Select(title=name, options=[str(v) for v in values], value=str(values[0]), width=300)


def _switcher(frames: Frames) -> LayoutDOM:
    keys = list(frames.views)
    values = [list(dict.fromkeys(k[i] for k in keys)) for i in range(len(frames.kdims))]
    views = []
    for i, key in enumerate(keys):
        view = hv.render(frames.views[key], backend="bokeh")
        view.visible = i == 0
        views.append(view)
    missing = Div(text="<i>no results for this selection</i>", visible=False)
    widgets = [_widget(name, vals) for name, vals in zip(frames.kdims, values, strict=True) if len(vals) > 1]
    shown = [i for i, vals in enumerate(values) if len(vals) > 1]
    callback = CustomJS(
        args={
            "widgets": widgets,
            "keys": ["|".join(str(k[i]) for i in shown) for k in keys],
            "views": views,
            "missing": missing,
        },
        code=_SWITCH_JS,
    )
    for w in widgets:
        w.js_on_change("value", callback)
    return column(row(*widgets), missing, *views) if widgets else column(*views)
