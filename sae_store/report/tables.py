"""The HTML page's tables: numbers that do not wrap, right-to-left text marked, images shown, and long
tables in pages.

Pages switch without JavaScript or a server: one hidden radio button per page, labels to pick one,
and a CSS rule per page that shows that page's rows while its button is checked. A table wider than
its card scrolls inside the card instead of running past it.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image

from sae_store.report.bidi import dir_attr, inline_html
from sae_store.report.section import Table, format_value

#: Rows per page of a long table.
PAGE_ROWS = 25
#: Rows the page holds at most (the rest are left to summary.json).
MAX_ROWS = 2000
#: Column whose values name images (:attr:`Table.images`).
IMAGE_COLUMN = "image"

TABLE_CSS = """
.sae-table { max-width: 100%; }
.sae-table .rows { overflow-x: auto; max-width: 100%; }
.sae-table table { border-collapse: collapse; font-size: 12px; }
.sae-table th { text-align: left; vertical-align: bottom; padding: 2px 8px; border-bottom: 1px solid #444; }
.sae-table td { text-align: left; vertical-align: top; padding: 2px 8px; border-bottom: 1px solid #e4e4e4; }
.sae-table tr.odd td { background: #f6f6f6; }
.sae-table .num { white-space: nowrap; text-align: right; font-variant-numeric: tabular-nums; }
.sae-table th.num { white-space: normal; }
.sae-table td[dir="rtl"] { text-align: right; }
.sae-table td img { display: block; }
.sae-table input { display: none; }
.sae-table .pager { font-size: 12px; margin: 4px 0; }
.sae-table .pager label { display: inline-block; min-width: 1.6em; margin: 1px; padding: 0 4px;
  border: 1px solid #ccc; border-radius: 3px; text-align: center; cursor: pointer; }
.sae-table .paged tr.row, .sae-table .pager .info { display: none; }
"""


def _png_url(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(value: Any, column: str, table: Table) -> str:
    if column == IMAGE_COLUMN and table.images.get(str(value)) is not None:
        name = html.escape(str(value))
        return f'<td><img src="{_png_url(table.images[str(value)])}" alt="{name}" title="{name}"></td>'
    text = format_value(value)
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_):
        return f'<td class="num">{html.escape(text)}</td>'
    return f"<td{dir_attr(text)}>{inline_html(text)}</td>"


def _numeric(table: Table) -> list[bool]:
    return [table.frame[c].dtype.kind in "iuf" for c in table.frame.columns]


def table_html(table: Table, key: str) -> tuple[str, str]:
    """The markup of ``table`` and its page rules (CSS to add to :data:`TABLE_CSS`).

    ``key`` names the page buttons; it must be unique within the HTML element the table goes in.
    """
    frame = table.frame.head(MAX_ROWS)
    columns = [str(c) for c in frame.columns]
    head = "".join(
        f"<th{' class=num' if num else ''}>{inline_html(c)}</th>"
        for c, num in zip(columns, _numeric(table), strict=True)
    )
    pages = max(1, -(-len(frame) // PAGE_ROWS))
    rows = []
    for i, values in enumerate(frame.itertuples(index=False)):
        classes = f"row p{i // PAGE_ROWS + 1}{' odd' if i % 2 else ''}"
        cells = "".join(_cell(v, c, table) for v, c in zip(values, columns, strict=True))
        rows.append(f'<tr class="{classes}">{cells}</tr>')
    body = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    left = len(table.frame) - len(frame)
    note = f'<div class="pager">({left} more rows in summary.json)</div>' if left else ""
    if pages == 1:
        return f'<div class="sae-table"><div class="rows">{body}</div>{note}</div>', ""
    buttons = "".join(
        f'<input type="radio" name="{key}" id="{key}-p{p}"{" checked" if p == 1 else ""}>'
        for p in range(1, pages + 1)
    )
    labels = "".join(f'<label for="{key}-p{p}">{p}</label>' for p in range(1, pages + 1))
    infos = "".join(
        f'<span class="info p{p}"> rows {(p - 1) * PAGE_ROWS + 1}-{min(p * PAGE_ROWS, len(frame))} '
        f"of {len(frame)}</span>"
        for p in range(1, pages + 1)
    )
    css = "\n".join(
        f"#{key}-p{p}:checked ~ .paged tr.p{p} {{ display: table-row; }}\n"
        f"#{key}-p{p}:checked ~ .pager .info.p{p} {{ display: inline; }}\n"
        f'#{key}-p{p}:checked ~ .pager label[for="{key}-p{p}"] '
        "{ background: #1f77b4; border-color: #1f77b4; color: white; }"
        for p in range(1, pages + 1)
    )
    markup = (
        f'<div class="sae-table">{buttons}<div class="pager">page {labels}{infos}</div>'
        f'<div class="rows paged">{body}</div>{note}</div>'
    )
    return markup, css
