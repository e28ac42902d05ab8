"""Right-to-left text (Arabic) in HTML: marked ``dir="rtl"`` so that browsers lay it out right to left.

Without the mark a browser lays Arabic out inside a left-to-right paragraph: the words still read
right to left, but the full stop lands beside the first word and quotes around a token swap sides. A
text whose first strong character is right-to-left gets ``dir="rtl"`` on its element; right-to-left
runs inside a left-to-right text (an Arabic token quoted in an English sentence) are isolated in
``<bdi dir="rtl">``. The direction comes from the Unicode bidirectional class of each character, the
way a browser's ``dir="auto"`` decides.
"""

from __future__ import annotations

import html
import re
import unicodedata

#: Bidirectional classes of strong right-to-left characters (Hebrew; Arabic, Syriac, Thaana ...).
_RTL = frozenset({"R", "AL"})
# A run of right-to-left letters and what lies between them (spaces, marks, Arabic digits and
# punctuation of the same scripts), from a right-to-left letter to one, with the sentence
# punctuation that ends it (the full stop of an Arabic caption belongs to it).
_LETTERS = "\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc"
_RUN = re.compile(f"[{_LETTERS}](?:[{_LETTERS}\\s]*[{_LETTERS}])?[.!?:]*")


def is_rtl(text: str) -> bool:
    """Whether ``text`` reads right to left: its first strong character is right-to-left."""
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind in _RTL:
            return True
        if kind == "L":
            return False
    return False


def has_rtl(text: str) -> bool:
    """Whether ``text`` holds any right-to-left letter."""
    return any(unicodedata.bidirectional(ch) in _RTL for ch in text)


def dir_attr(text: str) -> str:
    """`` dir="rtl"`` for an element holding ``text`` if it reads right to left, else ``""``."""
    return ' dir="rtl"' if is_rtl(text) else ""


def inline_html(text: str) -> str:
    """``text`` escaped for HTML, with right-to-left runs inside left-to-right text isolated.

    The element holding it takes :func:`dir_attr` of the same text.
    """
    if is_rtl(text) or not has_rtl(text):
        return html.escape(text)
    out, end = [], 0
    for m in _RUN.finditer(text):
        out += [html.escape(text[end : m.start()]), f'<bdi dir="rtl">{html.escape(m.group(0))}</bdi>']
        end = m.end()
    return "".join([*out, html.escape(text[end:])])


def span_html(text: str) -> str:
    """``text`` as inline HTML that keeps its direction: a ``<span dir="rtl">`` if it reads right to
    left, else :func:`inline_html` (for Markdown table cells, and text inside a sentence)."""
    return f'<span dir="rtl">{html.escape(text)}</span>' if is_rtl(text) else inline_html(text)
