"""Reading what a built page shows (its HTML and figures) without a browser."""

from __future__ import annotations

from typing import Any

import panel as pn


def walk(obj: Any) -> list[Any]:
    """Every pane and widget inside ``obj`` (a Panel layout), depth first."""
    out = [obj]
    for child in getattr(obj, "objects", []) or []:
        out.extend(walk(child))
    return out


def page_text(page: Any) -> str:
    """The HTML and Markdown text of every pane of a page, joined."""
    return "\n".join(
        str(p.object) for p in walk(page) if isinstance(p, pn.pane.HTML | pn.pane.Markdown) and p.object
    )


def figures(page: Any) -> list[Any]:
    """The HoloViews objects a page draws."""
    return [p.object for p in walk(page) if isinstance(p, pn.pane.HoloViews)]
