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
from html import escape
from pathlib import Path

import panel as pn
from bokeh.resources import INLINE

from sae_store.progress import progress_bar
from sae_store.report.section import Figure, Notice, Section, Table, Text
from sae_store.report.switcher import render
from sae_store.report.tables import TABLE_CSS, table_html

_PANEL_DIST = Path(pn.__file__).parent / "dist"
_PANEL_CDN = re.compile(r"https://cdn\.holoviz\.org/panel/[^/\"']+/dist/([^\"'?]+)(?:\?[^\"']*)?")
_ICON_LINK = re.compile(r"<link rel=\"(?:icon|apple-touch-icon)\"[^>]*>\n?")
_CSS_URL = re.compile(r"url\(['\"]?(\.\./[^'\")]+)['\"]?\)")
# What a browser would fetch from the network: stylesheet URLs in the document model, and
# src/href attributes of tags.
_EXTERNAL = re.compile(
    r"\"url\":\"(https?://[^\"]+)\"|<(?:link|script|img)\b[^>]*(?:href|src)=\"(https?://[^\"]+)\""
)
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


#: Long commands and paths stay inside their card: a command block scrolls on its own, a path in a
#: sentence breaks anywhere.
_TEXT_CSS = "pre { overflow-x: auto; } p code, li code { overflow-wrap: anywhere; }"


def _item_pane(item: object) -> pn.viewable.Viewable:
    if isinstance(item, Text):
        return pn.pane.Markdown(item.markdown, sizing_mode="stretch_width", stylesheets=[_TEXT_CSS])
    if isinstance(item, Notice):
        return pn.pane.Alert(
            item.markdown, alert_type=item.level, sizing_mode="stretch_width", stylesheets=[_TEXT_CSS]
        )
    if isinstance(item, Table):
        markup, pages_css = table_html(item, "table")  # each pane has a shadow root of its own
        parts: list[pn.viewable.Viewable] = []
        if item.caption:
            parts.append(pn.pane.Markdown(f"*{item.caption}*", sizing_mode="stretch_width"))
        parts.append(pn.pane.HTML(markup, stylesheets=[TABLE_CSS, pages_css], sizing_mode="stretch_width"))
        return pn.Column(*parts, sizing_mode="stretch_width")
    if isinstance(item, Figure):
        return pn.Column(
            pn.pane.Bokeh(render(item.interactive)),
            pn.pane.Markdown(f"*{item.caption}*", sizing_mode="stretch_width"),
        )
    raise TypeError(f"unknown report item {item!r}")


#: Scrolls to the element with the given id: sections are drawn inside (nested) shadow roots, where a
#: plain ``#anchor`` link finds nothing.
_GOTO_JS = (
    "const find = (root) => { for (const el of root.querySelectorAll('*')) {"
    " if (el.id === '{id}') return el;"
    " const hit = el.shadowRoot ? find(el.shadowRoot) : null; if (hit) return hit; } return null; };"
    " const el = find(document); if (el) { el.scrollIntoView(); history.replaceState(null, '', '#{id}'); }"
    " return false;"
)


def anchor(section: Section) -> str:
    """The id of a section's title in report.html."""
    return f"section-{section.key}"


def _contents(sections: Sequence[Section]) -> str:
    marks = {"ok": "", "partial": " (partial)", "not run": " (not run yet)"}
    items = "".join(
        f'<li><a href="#{anchor(s)}" onclick="{escape(_GOTO_JS.replace("{id}", anchor(s)))}">'
        f"{escape(s.title)}</a>{marks[s.status]}</li>"
        for s in sections
    )
    return f"<b>Contents</b><ul>{items}</ul>"


def write_html(sections: Sequence[Section], path: Path, *, title: str, intro: str) -> Path:
    """Write the interactive report: a title, contents, then every section in order."""
    parts: list[pn.viewable.Viewable] = [
        pn.pane.Markdown(f"# {title}\n\n{intro}", sizing_mode="stretch_width", stylesheets=[_TEXT_CSS]),
        pn.pane.HTML(_contents(sections), sizing_mode="stretch_width"),
    ]
    items = [(section, item) for section in sections for item in section.items]
    panes: dict[int, list[pn.viewable.Viewable]] = {id(section): [] for section in sections}
    for section, item in progress_bar(items, desc="HTML figures", unit="item", leave=False):
        panes[id(section)].append(_item_pane(item))
    for section in sections:
        parts.append(
            pn.Card(
                *panes[id(section)],
                header=pn.pane.HTML(
                    f'<h3 id="{anchor(section)}">{escape(section.title)}</h3>', css_classes=["card-title"]
                ),
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
