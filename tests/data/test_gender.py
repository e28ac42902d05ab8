from __future__ import annotations

import pytest

from sae_store.data.gender import (
    GenderCounts,
    count_gender_terms,
    label_captions,
    normalize_arabic,
    normalize_gender_value,
)
from sae_store.errors import DataError


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        # English: whole words, case-insensitive
        ("en", "A man riding a horse.", (1, 0)),
        ("en", "The WOMAN and her dog.", (0, 2)),
        ("en", "the therapist said there is history here", (0, 0)),  # he/her/his inside words
        ("en", "Many humans in Germany, a mention of a boycott.", (0, 0)),  # man/men/boy inside words
        ("en", "A woman.", (0, 1)),  # woman is female, never also "man"
        ("en", "Women and men.", (1, 1)),
        ("en", "She's smiling; he isn't.", (1, 1)),
        ("en", "A girl's bike next to the boys", (1, 1)),
        ("en", "A gentleman and two ladies", (1, 1)),
        ("en", "", (0, 0)),
        # Arabic: words behind proclitics
        ("ar", "والرجل يقف", (1, 0)),  # و + ال
        ("ar", "تتحدث بالمرأة", (0, 1)),  # ب + ال + مرأة
        ("ar", "هدية للبنت", (0, 1)),  # ل + ال -> لل
        ("ar", "وللبنت هدية", (0, 1)),  # و + لل
        ("ar", "فالنساء كالسيدات", (0, 2)),
        ("ar", "ولد وبنت يلعبان", (1, 1)),
        ("ar", "شاب وشبان وأولاد", (3, 0)),
        ("ar", "فتيات وطفلة", (0, 2)),
    ],
)
def test_english_whole_words_and_arabic_proclitics(
    language: str, text: str, expected: tuple[int, int]
) -> None:
    assert count_gender_terms(text, language) == GenderCounts(*expected)


@pytest.mark.parametrize(
    "text",
    [
        "مرجل كبير على النار",  # "cauldron" contains رجل
        "في المولد النبوي",  # "birthday/generator" contains ولد
        "ذكريات وتذكرة",  # "memories", "ticket" contain ذكر
        "مبنى البنتاغون",  # "the Pentagon" contains بنت after ال
        "فستان نسائي",  # "women's (adjective)" contains نساء but names no person
        "شبابيك مفتوحة",  # "windows"
    ],
)
def test_arabic_never_matches_substrings(text: str) -> None:
    assert count_gender_terms(text, "ar") == GenderCounts(0, 0)


def test_arabic_diacritics_tatweel_and_spelling_variants() -> None:
    assert count_gender_terms("رَجُلٌ يَقْرَأُ كِتَابًا", "ar") == GenderCounts(1, 0)
    assert count_gender_terms("امْرَأَةٌ", "ar") == GenderCounts(0, 1)
    assert count_gender_terms("رجـــل", "ar") == GenderCounts(1, 0)  # tatweel
    for spelling in ("امرأة", "امراة", "امرأه", "إمرأة", "المرأة", "المراة"):
        assert count_gender_terms(spelling, "ar") == GenderCounts(0, 1), spelling
    assert count_gender_terms("أنثى وانثي", "ar") == GenderCounts(0, 2)
    assert normalize_arabic("أَنْثَى") == "انثي"


def test_arabic_dhakar_only_as_exact_noun_forms() -> None:
    for word in ("ذكر", "الذكر", "ذكور", "الذكور"):
        assert count_gender_terms(word, "ar") == GenderCounts(1, 0), word
    # "by mentioning", "and he mentioned", "for mentioning": verb / verbal noun, not "male".
    assert count_gender_terms("بذكر الاسم وذكر المكان لذكر", "ar") == GenderCounts(0, 0)


def test_arabic_mirror_is_not_woman() -> None:
    assert count_gender_terms("رجل ينظر في المرآة", "ar") == GenderCounts(1, 0)
    assert label_captions([], ["رجل ينظر في المرآة"]).label == "male"


def test_arabic_child_is_generic() -> None:
    assert count_gender_terms("طفل يلعب", "ar") == GenderCounts(0, 0)
    assert count_gender_terms("طفلة تلعب", "ar") == GenderCounts(0, 1)


def test_unknown_language() -> None:
    with pytest.raises(DataError, match=r"languages 'en' and 'ar', not 'fr'"):
        count_gender_terms("un homme", "fr")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("en", "ar", "label"),
    [
        (["A man walking."], ["رجل يمشي."], "male"),
        (["A girl reading."], [], "female"),
        ([], ["امرأة تقرأ."], "female"),
        (["A man and a woman."], ["رجل وامرأة."], "ambiguous"),
        (["A man walking."], ["امرأة تمشي."], "ambiguous"),  # languages disagree
        (["A man walking.", "A woman walking."], [], "ambiguous"),  # captions disagree
        (["A person walking."], ["شخص يمشي."], "unknown"),
        ([], [], "unknown"),
    ],
)
def test_label_captions(en: list[str], ar: list[str], label: str) -> None:
    assert label_captions(en, ar).label == label


def test_label_captions_keeps_evidence() -> None:
    result = label_captions(["A man and his son."], ["رجل وابنه."])
    assert result.en == GenderCounts(2, 0)
    assert result.ar == GenderCounts(1, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("male", "male"),
        (" M ", "male"),
        ("Man", "male"),
        ("FEMALE", "female"),
        ("f", "female"),
        ("woman", "female"),
    ],
)
def test_normalize_gender_value(value: str, expected: str) -> None:
    assert normalize_gender_value(value) == expected


@pytest.mark.parametrize("value", ["x", "unknown", "", "boy"])
def test_normalize_gender_value_rejects(value: str) -> None:
    with pytest.raises(
        DataError, match=rf"Unknown gender value {value!r}; accepted values .*'male'.*'woman'"
    ):
        normalize_gender_value(value)
