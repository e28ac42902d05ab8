"""The search box: what each entry opens, the address it leaves, and what a miss says."""

from __future__ import annotations

import re

import pytest

from sae_store.errors import SaeStoreError
from sae_store.explore import Explorer, build_page
from sae_store.explore.app import SearchMissError, resolve_search
from sae_store.explore.layout import url

from .pages import page_text, walk


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("S0003", {"page": "sample", "id": "s0003"}),  # ids ignore case
        (" 1 : 7 ", {"page": "feature", "layer": 1, "feature": 7}),
    ],
)
def test_search_ignores_case_and_spaces(explorer: Explorer, query, expected):
    assert resolve_search(explorer.current(), query, None) == expected


@pytest.mark.parametrize(
    ("query", "error", "message"),
    [
        (
            "",
            SaeStoreError,
            "the search box is empty: type a feature id (123), LAYER:FEATURE (17:123) or a sample id",
        ),
        ("2:x", SaeStoreError, "'2:x' is not LAYER:FEATURE: both parts must be whole numbers, e.g. 2:0"),
        (
            "s003",
            SearchMissError,
            "no sample 's003' in the store, and it is not a feature id (a whole number) or LAYER:FEATURE; "
            "did you mean 's0003' or 's0039' or 's0038'?",
        ),
        (
            "zebra",
            SearchMissError,
            "no sample 'zebra' in the store, and it is not a feature id (a whole number) or LAYER:FEATURE; "
            "sample ids look like 's0000', 's0001', 's0002'",
        ),
    ],
)
def test_search_that_finds_nothing_says_why(explorer: Explorer, query, error, message):
    with pytest.raises(error) as caught:
        resolve_search(explorer.current(), query, None)
    assert str(caught.value) == message


def _box(page) -> str:
    (box,) = [p for p in walk(page) if type(p).__name__ == "TextInput"]
    return str(box.value)


def test_a_search_that_finds_a_page_shows_that_page_s_address(explorer: Explorer):
    page = build_page(explorer, {"page": "search", "q": "S0003", "language": "ar"})
    text = page_text(page)
    assert "## Sample s0003" in text
    address = url("sample", id="s0003", language="ar")
    assert f"<script>history.replaceState(null, '', \"{address}\");</script>" in text
    assert _box(page) == ""  # the box starts empty on the page found


def test_a_search_that_finds_nothing_keeps_the_text_and_links_the_likely_samples(explorer: Explorer):
    page = build_page(explorer, {"page": "search", "q": "s003", "language": "ar"})
    text = page_text(page)
    assert "Cannot show this page:</b> no sample &#x27;s003&#x27; in the store" in text
    assert re.findall(r'<a href="\?page=sample&amp;id=(\w+)&amp;language=ar">', text) == [
        "s0003",
        "s0039",
        "s0038",
    ]
    assert "history.replaceState" not in text  # the address stays the search's
    assert _box(page) == "s003"  # the text stays in the box, to be corrected
