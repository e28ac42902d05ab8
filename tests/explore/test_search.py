"""The search box: what each entry opens, the address it leaves, and what a miss says."""

from __future__ import annotations

import html
import re

import pytest

from sae_store.errors import SaeStoreError
from sae_store.explore import Explorer, build_page
from sae_store.explore.app import SearchMissError, resolve_search
from sae_store.explore.layout import url
from sae_store.explore.search import MAX_RESULTS, explanation_hits, token_hits

from .conftest import LENS_TERMS, N_FEATURES
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
            "the search box is empty: type a feature id (123), LAYER:FEATURE (17:123), a sample id, words of "
            "an explanation or a token",
        ),
        ("2:x", SaeStoreError, "'2:x' is not LAYER:FEATURE: both parts must be whole numbers, e.g. 2:0"),
        (
            "s003",
            SearchMissError,
            "no sample 's003' in the store, no explanation or logit-lens token matches it, and it is not a "
            "feature id (a whole number) or LAYER:FEATURE; "
            "did you mean 's0003' or 's0039' or 's0038'?",
        ),
        (
            "zebra",
            SearchMissError,
            "no sample 'zebra' in the store, no explanation or logit-lens token matches it, and it is not a "
            "feature id (a whole number) or LAYER:FEATURE; "
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


def test_explanations_are_found_by_their_words_best_detection_score_first(explorer: Explorer):
    ex = explorer.current().explanations.copy(deep=True)
    # the fixture explained 2:3 'Active on "image 1,1".' and 2:0 'Active on "image 1,3".'
    assert [
        (int(a), int(b)) for a, b in zip(ex.entry_layer.values, ex.entry_feature.values, strict=True)
    ] == [
        (2, 3),
        (2, 0),
    ]
    ex["detection_balanced_accuracy"].loc[{"language": "en"}] = [0.6, 0.9]
    ex["detection_balanced_accuracy"].loc[{"language": "ar"}] = [0.8, float("nan")]

    def found(query: str, language: str) -> list[tuple[int, int, float]]:
        return [(h.layer, h.feature, h.detection) for h in explanation_hits(ex, query, language)]

    assert found("IMAGE active", "en") == [(2, 0, pytest.approx(0.9)), (2, 3, pytest.approx(0.6))]
    assert found("image", "ar")[0] == (2, 3, pytest.approx(0.8))  # unscored last
    assert found("image", "ar")[1][:2] == (2, 0)
    assert found("image 1,3", "en") == [(2, 0, pytest.approx(0.9))]  # every word must be there
    assert found("beard", "en") == []
    assert [f for _, f, _ in found("  ", "en")] == [0, 3]  # no words: every entry (the overview's list)


def _expected_term_hits(layers, w: int) -> list[tuple[int, int, int]]:
    # conftest.write_lens: term w of feature f ranks (f + w) % 50 + 1 in every layer
    ranked = sorted(((f + w) % 50 + 1, la, f) for la in layers for f in range(N_FEATURES))
    return [(la, f, rank) for rank, la, f in ranked[:MAX_RESULTS]]


@pytest.mark.parametrize("query", ["man", " MAN ", "رجل"])
def test_tokens_are_found_across_layers_most_promoting_feature_first(explorer: Explorer, query):
    data = explorer.current()
    w = [t[0] for t in LENS_TERMS].index(query.strip().lower())
    hits = token_hits(data, query)
    assert [(h.layer, h.feature, h.rank) for h in hits] == _expected_term_hits(data.layers, w)
    assert {h.token for h in hits} == {LENS_TERMS[w][0]}  # not "woman" for "man"
    assert hits[0].logit == pytest.approx(-0.1)


def test_a_search_by_token_or_words_lists_linked_features_at_a_shareable_address(explorer: Explorer):
    data = explorer.current()
    page = build_page(explorer, {"page": "search", "q": "رجل", "language": "ar"})
    text = page_text(page)
    assert "## Search: رجل" in text
    lens = text[text.index("logit lens promotes") :]
    links = re.findall(r'<a href="\?page=feature&amp;layer=(\d+)&amp;feature=(\d+)&amp;language=ar">', lens)
    assert [(int(a), int(b)) for a, b in links] == [
        (la, f) for la, f, _ in _expected_term_hits(data.layers, 2)
    ]
    assert "No stored explanation contains them." in text
    assert "history.replaceState" not in text  # the search's own address, with the query, is the one to share
    assert _box(page) == "رجل"
    assert f'<a href="{html.escape(url("search", language="en", q="رجل"))}">en</a>' in text  # language switch
    words = page_text(build_page(explorer, {"page": "search", "q": "image", "language": "en"}))
    section = words[words.index("Explanations containing") : words.index("logit lens promotes")]
    assert re.findall(r"page=feature&amp;layer=(\d+)&amp;feature=(\d+)", section) == [("2", "0"), ("2", "3")]
    assert (
        "Active on &quot;image 1,3&quot;." in section
        and "No feature's logit lens promotes that token." in words
    )


def test_tokens_of_the_promoted_lists_are_found_through_the_tokenizer(full_store):
    """With the model's tokenizer, any promoted token is searchable, not only the study's gender words:
    here a vocabulary where token 203 is " Man" (conftest.write_lens: layer 2's feature f promotes
    200 + f + r at rank r + 1 with logit 3 - r / 2)."""
    from sae_store.explore.data import ExploreData

    data = ExploreData(full_store.path)
    data.__dict__["decode_token"] = lambda i: " Man" if i == 203 else f"t{i}"
    hits = token_hits(data, "man")
    listed = [(h.layer, h.feature, h.rank, h.logit) for h in hits if h.token == "' Man'"]
    assert listed == [(2, 3, 1, 3.0), (2, 2, 2, 2.5), (2, 1, 3, 2.0), (2, 0, 4, 1.5)]
    assert hits[0].token == "' Man'" and len(hits) == MAX_RESULTS  # then the gender word "man" by rank
    assert [(h.layer, h.feature) for h in hits if h.token == "man"] == [
        (la, f) for la, f, _ in _expected_term_hits(data.layers, 0)
    ][: MAX_RESULTS - 4]
