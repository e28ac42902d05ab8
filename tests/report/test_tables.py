"""The report's HTML tables: right-to-left text marked, numbers that do not wrap, images, pages."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sae_store.report.bidi import dir_attr, inline_html, is_rtl, span_html
from sae_store.report.section import Table, format_value, markdown_table
from sae_store.report.tables import PAGE_ROWS, table_html


@pytest.mark.parametrize(
    ("text", "rtl"),
    [
        ("امرأة في الحديقة.", True),
        ("  «امرأة» A", True),  # the first strong character decides, as dir="auto" would
        ("A woman. امرأة", False),
        ("12.5", False),
        ("", False),
    ],
)
def test_direction_is_that_of_the_first_strong_character(text: str, rtl: bool):
    assert is_rtl(text) is rtl
    assert dir_attr(text) == (' dir="rtl"' if rtl else "")


def test_arabic_inside_english_text_is_isolated_with_its_full_stop():
    text = "strongest text tokens: ' الشخص', ' بالتفصيل.', '\\n' & more"
    assert inline_html(text) == (
        'strongest text tokens: &#x27; <bdi dir="rtl">الشخص</bdi>&#x27;, &#x27; '
        '<bdi dir="rtl">بالتفصيل.</bdi>&#x27;, &#x27;\\n&#x27; &amp; more'
    )
    assert inline_html("امرأة <b>") == "امرأة &lt;b&gt;"  # an Arabic text is marked on its element
    assert span_html("امرأة.") == '<span dir="rtl">امرأة.</span>'


def test_values_print_as_both_documents_show_them():
    assert [format_value(v) for v in (20000.0, -0.0, 0.1567441, 9.621751e-06, np.float32(0.5), None)] == [
        "20000",
        "0",
        "0.1567",
        "9.622e-06",
        "0.5",
        "–",
    ]
    assert format_value(float("nan")) == "–" and format_value("img_0000.png") == "img_0000.png"


def test_markdown_marks_arabic_cells_and_names_where_the_rest_is():
    frame = pd.DataFrame({"caption": ["امرأة في الحديقة.", "A man | a dog"], "q": [1e-5, 0.5]})
    text = markdown_table(frame, max_rows=1, more="report.html")
    assert text.splitlines()[2] == '| <span dir="rtl">امرأة في الحديقة.</span> | 1e-05 |'
    assert text.endswith("(1 more rows in report.html)")
    assert "A man \\| a dog" in markdown_table(frame)


def _cells(markup: str) -> list[str]:
    return re.findall(r"<td[^>]*>.*?</td>", markup)


def test_html_cells_carry_direction_number_class_and_images():
    thumb = np.zeros((8, 8, 3), np.uint8)
    thumb[..., 0] = 255
    frame = pd.DataFrame(
        {
            "sample": ["s1", "s2"],
            "image": ["a.png", "missing.png"],
            "q": [9.621751e-06, 0.5],
            "caption": ["امرأة في الحديقة.", "A woman in a park."],
        }
    )
    markup, css = table_html(Table(frame, images={"a.png": thumb, "missing.png": None}), "t")
    cells = _cells(markup)
    assert cells[2] == '<td class="num">9.622e-06</td>'
    assert cells[3] == '<td dir="rtl">امرأة في الحديقة.</td>'
    assert cells[5] == "<td>missing.png</td>"  # an unreadable image: its name
    assert cells[7] == "<td>A woman in a park.</td>"
    src = re.fullmatch(
        r'<td><img src="data:image/png;base64,([^"]+)" alt="a.png" title="a.png"></td>', cells[1]
    )
    assert src is not None
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.group(1)))).convert("RGB"))
    np.testing.assert_array_equal(decoded, thumb)
    assert css == "" and "<input" not in markup  # two rows: one page, no page buttons
    assert "<th class=num>q</th>" in markup


def test_long_tables_come_in_pages_shown_one_at_a_time():
    n = 2 * PAGE_ROWS + 3
    markup, css = table_html(Table(pd.DataFrame({"x": range(n)}), max_rows=5), "tbl")
    pages = re.findall(r'<tr class="row (p\d+)[^"]*">', markup)
    assert len(pages) == n  # every row on the page (max_rows only limits report.md)
    assert pages.count("p1") == pages.count("p2") == PAGE_ROWS and pages.count("p3") == 3
    buttons = re.findall(r'<input type="radio" name="tbl" id="(tbl-p\d)"( checked)?>', markup)
    assert buttons == [("tbl-p1", " checked"), ("tbl-p2", ""), ("tbl-p3", "")]
    assert re.findall(r'<label for="(tbl-p\d)">(\d)</label>', markup) == [
        ("tbl-p1", "1"),
        ("tbl-p2", "2"),
        ("tbl-p3", "3"),
    ]
    for p in (1, 2, 3):
        assert f"#tbl-p{p}:checked ~ .paged tr.p{p} {{ display: table-row; }}" in css
    assert f'<span class="info p3"> rows {2 * PAGE_ROWS + 1}-{n} of {n}</span>' in markup
