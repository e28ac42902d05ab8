"""What a report section is made of: text, figures and tables, rendered to HTML and to Markdown.

Section builders (``*_sections.py``) take results that are already loaded and return a
:class:`Section`; they never read files and never compute results. The writers
(:mod:`~sae_store.report.html`, :mod:`~sae_store.report.markdown`) turn the same sections into the
interactive page and the static document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from sae_store.report.bidi import has_rtl, span_html


@dataclass(frozen=True)
class Text:
    """A paragraph (Markdown) shown in both documents."""

    markdown: str


@dataclass(frozen=True)
class Frames:
    """Views of one figure keyed by dimension values (e.g. layer and language), switched in the page.

    Each view is drawn once, and widgets (a slider for consecutive integers, else a menu) show one at a
    time: a static file needs no server, and unlike Panel's state embedding the cost grows linearly
    with the number of views.
    """

    kdims: tuple[str, ...]
    views: dict[tuple[Any, ...], Any]
    """HoloViews object (Bokeh options) per key; keys are tuples with one value per ``kdims``."""


@dataclass(frozen=True)
class Figure:
    """A figure: an interactive HoloViews object for the HTML page, a static one for the PNG."""

    name: str
    """File stem of the PNG (``figures/<name>.png``); unique within the report."""
    caption: str
    """What the figure shows and where its numbers come from."""
    interactive: Any
    """HoloViews object with Bokeh options, or :class:`Frames` of them."""
    static: Any | None = None
    """HoloViews object with matplotlib options for the PNG; ``None`` leaves the figure out of
    report.md (for figures that only make sense interactively)."""


@dataclass(frozen=True)
class Table:
    """A table shown in both documents: report.md keeps its first ``max_rows`` rows, the HTML page
    shows them all in pages (:mod:`~sae_store.report.tables`)."""

    frame: pd.DataFrame
    caption: str = ""
    max_rows: int = 50
    images: Mapping[str, Any] = field(default_factory=dict)
    """Thumbnails (RGB ``uint8`` arrays, or ``None`` for an unreadable image) of the values of the
    column ``image``: the HTML page shows the picture, report.md the file name."""


@dataclass(frozen=True)
class Notice:
    """A highlighted box: a step that has not run, a missing input, a problem found."""

    markdown: str
    level: Literal["info", "warning", "danger"] = "warning"


Item = Text | Figure | Table | Notice


@dataclass
class Section:
    """One titled part of the report."""

    key: str
    """Stable identifier (HTML anchor and key in summary.json)."""
    title: str
    items: list[Item] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    """Headline numbers for summary.json, copied from the results (never recomputed)."""
    status: Literal["ok", "partial", "not run"] = "ok"

    @property
    def figures(self) -> list[Figure]:
        return [item for item in self.items if isinstance(item, Figure)]


def not_run_section(key: str, title: str, what: str, commands: Sequence[str]) -> Section:
    """A section whose inputs are missing: says what would be shown and the commands that produce it."""
    lines = [f"**Not run yet.** {what}", ""]
    if commands:
        lines += ["Run:", "", "```", *commands, "```"]
    return Section(
        key=key,
        title=title,
        items=[Notice("\n".join(lines), level="info")],
        summary={"status": "not run", "commands": list(commands)},
        status="not run",
    )


#: How a table shows a value that was not measured (NaN), in both documents.
MISSING = "–"


def format_value(value: Any) -> str:
    """A table cell's text: floats with 4 significant digits (whole numbers without decimals, NaN as
    :data:`MISSING`, as is ``None``), anything else as ``str``."""
    if value is None:
        return MISSING
    if isinstance(value, float | np.floating):
        v = float(value)
        if v != v:
            return MISSING  # NaN: not measured
        if v.is_integer() and abs(v) < 1e15:
            return f"{v + 0.0:.0f}"  # + 0.0: no "-0"
        return f"{v:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame, *, max_rows: int | None = None, more: str = "summary.json") -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (cells as :func:`format_value`; right-to-left text
    in a ``<span dir="rtl">``); a note names ``more``, where the rows left out are."""
    shown = frame if max_rows is None else frame.head(max_rows)

    def cell(value: Any) -> str:
        text = format_value(value)
        if has_rtl(text):
            text = span_html(text)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    note = [f"\n({len(frame) - len(shown)} more rows in {more})"] if len(shown) < len(frame) else []
    return "\n".join([header, rule, *rows, *note])
