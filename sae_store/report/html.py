"""report.html: one self-contained page (all JavaScript and CSS inside, zero external loads).

Cluster nodes have no internet, so a report that fetches anything from a CDN shows a blank or
broken page there. Bokeh's inline resources put the scripts in the file; Panel still links its own
stylesheets and icons on its CDN, so those links are replaced with ``data:`` URLs of the CSS files
shipped in the installed panel package, and the icon links are dropped.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from pathlib import Path

import panel as pn
from bokeh.resources import INLINE

from sae_store.progress import progress_bar
from sae_store.report.section import MISSING, Figure, Notice, Section, Table, Text
from sae_store.report.switcher import render

_PANEL_DIST = Path(pn.__file__).parent / "dist"
_PANEL_CDN = re.compile(r"https://cdn\.holoviz\.org/panel/[^/\"']+/dist/([^\"'?]+)(?:\?[^\"']*)?")
_ICON_LINK = re.compile(r"<link rel=\"(?:icon|apple-touch-icon)\"[^>]*>\n?")
_CSS_URL = re.compile(r"url\(['\"]?(\.\./[^'\")]+)['\"]?\)")
# What a browser would fetch from the network: stylesheet URLs in the document model, and
# src/href attributes of tags.
_EXTERNAL = re.compile(
    r"\"url\":\"(https?://[^\"]+)\"|<(?:link|script|img)\b[^>]*(?:href|src)=\"(https?://[^\"]+)\""
)
_TABLE_CSS = ".dataframe td, .dataframe th { text-align: left; padding: 2px 10px; }"
_MIME = {".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


def _data_url(path: Path, content: bytes | None = None) -> str:
    data = path.read_bytes() if content is None else content
    return (
        f"data:{_MIME.get(path.suffix, 'application/octet-stream')};base64,{base64.b64encode(data).decode()}"
    )


def _css_inlined(path: Path) -> bytes:
    """The stylesheet with its relative ``url(../...)`` references turned into data URLs."""

    def replace(m: re.Match[str]) -> str:
        target = (path.parent / m.group(1)).resolve()
        return f"url('{_data_url(target)}')" if target.is_file() else m.group(0)

    return _CSS_URL.sub(replace, path.read_text(encoding="utf-8")).encode()


def make_offline(html: str) -> str:
    """Replace Panel's CDN stylesheet links with inline data URLs and drop its icon links.

    Raises
    ------
    RuntimeError
        Something would still be loaded from the network (a Panel file this code does not know).
    """

    def replace(m: re.Match[str]) -> str:
        path = _PANEL_DIST / m.group(1)
        if path.suffix == ".css" and path.is_file():
            return _data_url(path, _css_inlined(path))
        return m.group(0)

    html = _PANEL_CDN.sub(replace, _ICON_LINK.sub("", html))
    left = external_references(html)
    if left:
        raise RuntimeError(f"the report would still load {len(left)} files from the network: {left[:5]}")
    return html


def external_references(html: str) -> list[str]:
    """URLs a browser would fetch from the network when opening ``html``."""
    return [a or b for a, b in _EXTERNAL.findall(html)]


def _item_pane(item: object) -> pn.viewable.Viewable:
    if isinstance(item, Text):
        return pn.pane.Markdown(item.markdown, sizing_mode="stretch_width")
    if isinstance(item, Notice):
        return pn.pane.Alert(item.markdown, alert_type=item.level, sizing_mode="stretch_width")
    if isinstance(item, Table):
        parts: list[pn.viewable.Viewable] = []
        if item.caption:
            parts.append(pn.pane.Markdown(f"*{item.caption}*"))
        parts.append(
            pn.pane.DataFrame(
                item.frame.head(item.max_rows),
                index=False,
                justify="left",
                na_rep=MISSING,
                sizing_mode="stretch_width",
                stylesheets=[_TABLE_CSS],
            )
        )
        if len(item.frame) > item.max_rows:
            parts.append(pn.pane.Markdown(f"({len(item.frame) - item.max_rows} more rows in summary.json)"))
        return pn.Column(*parts, sizing_mode="stretch_width")
    if isinstance(item, Figure):
        return pn.Column(
            pn.pane.Bokeh(render(item.interactive)),
            pn.pane.Markdown(f"*{item.caption}*", sizing_mode="stretch_width"),
        )
    raise TypeError(f"unknown report item {item!r}")


def _contents(sections: Sequence[Section]) -> str:
    # plain list: sections render inside shadow DOM, where in-page anchors do not resolve
    marks = {"ok": "", "partial": " (partial)", "not run": " (not run yet)"}
    return "\n".join(f"- {s.title}{marks[s.status]}" for s in sections)


def write_html(sections: Sequence[Section], path: Path, *, title: str, intro: str) -> Path:
    """Write the interactive report: a title, contents, then every section in order."""
    parts: list[pn.viewable.Viewable] = [
        pn.pane.Markdown(
            f"# {title}\n\n{intro}\n\n**Contents**\n\n{_contents(sections)}", sizing_mode="stretch_width"
        )
    ]
    items = [(section, item) for section in sections for item in section.items]
    panes: dict[int, list[pn.viewable.Viewable]] = {id(section): [] for section in sections}
    for section, item in progress_bar(items, desc="HTML figures", unit="item", leave=False):
        panes[id(section)].append(_item_pane(item))
    for section in sections:
        parts.append(
            pn.Card(
                *panes[id(section)],
                title=section.title,
                collapsible=True,
                sizing_mode="stretch_width",
                margin=(10, 5),
            )
        )
    layout = pn.Column(*parts, sizing_mode="stretch_width", max_width=1200)
    buffer = io.StringIO()
    # no embedding of Python-side widget states: Frames switch views in the browser (switcher.py)
    layout.save(buffer, title=title, resources=INLINE, embed=False)
    path.write_text(make_offline(buffer.getvalue()), encoding="utf-8")
    return path
