"""Pieces every explorer page shares: links between pages, the header with search and language
switch, tables, and messages that say which command produces what a page is missing."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import panel as pn

from sae_store.report import dir_attr, inline_html

#: Direction of each language's text (Arabic is written right to left).
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur"})


def url(page: str, **params: Any) -> str:
    """The relative URL of a page (``overview``, ``feature``, ``sample``, ``search``)."""
    return "?" + urlencode({"page": page, **{k: v for k, v in params.items() if v is not None}})


def link(text: str, page: str, **params: Any) -> str:
    """An HTML link to a page."""
    return f'<a href="{html.escape(url(page, **params))}">{html.escape(text)}</a>'


def text_html(text: str, language: str) -> str:
    """Text in its language's direction (``dir="rtl"`` for Arabic)."""
    direction = "rtl" if language in RTL_LANGUAGES else "ltr"
    return f'<div dir="{direction}" lang="{html.escape(language)}">{html.escape(text)}</div>'


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``-`` for missing/NaN, scientific notation for small p/q values."""
    if value is None:
        return "-"
    if isinstance(value, float | int) and not isinstance(value, bool):
        v = float(value)
        if math.isnan(v):
            return "-"
        if v != 0 and abs(v) < 10 ** (-digits):
            return f"{v:.2e}"
        return f"{v:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def _cell(value: Any) -> str:
    text = fmt(value)
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f'<td class="num">{text}</td>'
    return f"<td{dir_attr(text)}>{inline_html(text)}</td>"  # right-to-left text (Arabic) marked


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped (with their text direction) unless ``raw`` (cells that are links)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" if raw else _cell(c) for c in row) + "</tr>" for row in rows
    )
    return f'<table class="explore"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
table.explore { border-collapse: collapse; font-size: 13px; }
table.explore td, table.explore th { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; }
table.explore td.num { white-space: nowrap; }
table.explore td[dir="rtl"] { text-align: right; }
.missing { background: #fff4e5; padding: 6px 10px; border-left: 4px solid #e76f51; }
.notice { background: #e8f4fd; padding: 6px 10px; border-left: 4px solid #1f77b4; }
"""


def html_pane(markup: str, **kwargs: Any) -> pn.pane.HTML:
    """An HTML pane with the explorer's table styles."""
    return pn.pane.HTML(markup, stylesheets=[_CSS], **kwargs)


def missing(what: str, command: str) -> pn.pane.HTML:
    """A box saying what is not there yet and the command that produces it."""
    return html_pane(
        f'<div class="missing">{html.escape(what)}. Run <code>{html.escape(command)}</code> first.</div>'
    )


def error_box(message: str, links: Sequence[str] = ()) -> pn.pane.HTML:
    """A box showing why a page cannot be drawn (bad id in the URL, ...), with ``links`` (HTML) to
    pages that may be meant."""
    more = f"<br>{' &middot; '.join(links)}" if links else ""
    return html_pane(f'<div class="missing"><b>Cannot show this page:</b> {html.escape(message)}{more}</div>')


def replace_address(address: str) -> pn.pane.HTML:
    """Shows ``address`` in the browser's address bar in place of the one that opened the page (a
    search's), without loading it again or adding a step to the back button's history."""
    return html_pane(f"<script>history.replaceState(null, '', {json.dumps(address)});</script>", margin=0)


def header(
    title: str, page: str, params: dict[str, Any], languages: Sequence[str], language: str, query: str = ""
) -> pn.Column:
    """Title, a link back to the overview, the language switch and the search box (holding ``query``,
    a search that found nothing, for the user to correct)."""
    switch = " | ".join(
        f"<b>{lang}</b>" if lang == language else link(lang, page, **{**params, "language": lang})
        for lang in languages
    )
    search = pn.widgets.TextInput(
        value=query,
        placeholder="feature id, LAYER:FEATURE, sample id, explanation words or a token - Enter",
        width=440,
    )
    # navigating in the browser: no server round trip, and the result is an ordinary URL
    search.jscallback(
        value="window.location.search = '?page=search&q=' + encodeURIComponent(cb_obj.value)"
        f" + '&language={language}'"
        + (f" + '&layer={params['layer']}'" if params.get("layer") is not None else "")
    )
    nav = html_pane(f"{link('overview', 'overview', language=language)} &nbsp; language: {switch}")
    return pn.Column(pn.pane.Markdown(f"## {title}"), pn.Row(nav, search), sizing_mode="stretch_width")
