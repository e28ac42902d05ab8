"""Gender words in English and Arabic captions: counting them and labelling an image.

English is matched on whole words, case-insensitively ("he" never matches inside "the", "man" never
inside "woman" or "many"). Arabic is normalised first, then split into words; a word counts when it
*equals* a list word once an attached proclitic (و ف ب ل ك, the article ال, and combinations such as
وال بال لل فال) is removed. Raw substring matching, the defect of the original pipeline, is never used.

Arabic normalisation (applied to the text and, identically, to the word lists):

* tashkeel (harakat, tanween, shadda, sukun, superscript alef) and tatweel are removed;
* the hamzated and madda alef forms أ إ آ ٱ become bare ا;
* taa marbuta ة becomes ه (so امرأة, امراة and امرأه are one word) and alef maksura ى becomes ي.

Ambiguous Arabic words, and what this module does with them:

* ذكر means "male" but also "mentioned" (ذُكِر) and "remembrance"; it counts as male only in the
  exact forms ذكر, الذكر, ذكور and الذكور. Any other proclitic (بذكر "by mentioning", وذكر "and he
  mentioned") is read as the verb or the verbal noun and ignored.
* مرآة "mirror" normalises to the same letters as مرأة "woman" (the -مرأة in المرأة); a word written
  with the madda (مرآة, المرآة, بالمرآة) is therefore read as "mirror" and ignored. Writers who drop
  the madda from "mirror" cannot be told apart from "woman".
* طفل ("child") is grammatically masculine but is the generic word for a child of either sex, so,
  unlike the original pipeline, it does not count as male; طفلة (a girl) counts as female.
* رجل "man" and رِجل "leg", ولد "boy" and وُلِد "was born" share their letters; both count as male.
  Captions rarely use the second readings; the label stays "ambiguous" whenever both genders occur.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from itertools import product
from typing import Literal, NamedTuple

from sae_store.errors import DataError

Language = Literal["en", "ar"]
GenderName = Literal["male", "female", "ambiguous", "unknown"]

#: Every label an image can get, in the order tables and reports list them.
GENDER_LABELS: tuple[GenderName, ...] = ("male", "female", "ambiguous", "unknown")

ENGLISH_FEMALE: frozenset[str] = frozenset(
    {"woman", "women", "girl", "girls", "female", "females", "lady", "ladies", "she", "her"}
)
ENGLISH_MALE: frozenset[str] = frozenset(
    {"man", "men", "boy", "boys", "male", "males", "gentleman", "gentlemen", "he", "his", "him"}
)

# Written as a reader would spell them; normalised below with the same function as the text.
_ARABIC_FEMALE_WORDS = (
    "امرأة", "امرأتان", "امرأتين", "مرأة", "نساء", "نسوة", "فتاة", "فتاتان", "فتاتين", "فتيات",
    "طفلة", "بنت", "بنتان", "بنتين", "بنات", "سيدة", "سيدتان", "سيدتين", "سيدات", "أنثى", "إناث",
)  # fmt: skip
_ARABIC_MALE_WORDS = (
    "رجل", "رجلا", "رجلان", "رجال", "ولد", "ولدا", "ولدان", "أولاد", "شاب", "شابا", "شابان",
    "شبان", "صبي", "صبيا", "صبيان", "فتى", "فتيان",
)  # fmt: skip
# Matched only exactly as written here, never with another proclitic (see the module docstring).
_ARABIC_MALE_EXACT = ("ذكر", "الذكر", "ذكور", "الذكور")

_TASHKEEL = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ALEFS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ة": "ه", "ى": "ي"})
# Letters only: digits, underscores, punctuation and spaces all separate words.
_WORD = re.compile(r"[^\W\d_]+")
_MIRROR = "مرآ"


class GenderCounts(NamedTuple):
    """How many male and female words a text contains."""

    male: int
    female: int


class GenderLabel(NamedTuple):
    """The gender label of one image and the evidence behind it."""

    label: GenderName
    """``"male"``, ``"female"``, ``"ambiguous"`` (both named) or ``"unknown"`` (neither named)."""
    en: GenderCounts
    """Gender words summed over the English captions."""
    ar: GenderCounts
    """Gender words summed over the Arabic captions."""


def normalize_arabic(text: str) -> str:
    """Normalise Arabic text for matching (see the module docstring for the rules).

    Parameters
    ----------
    text : str
        Any text; non-Arabic characters are kept as they are.

    Returns
    -------
    str
        The text without tashkeel or tatweel, with unified alef, taa marbuta and alef maksura.
    """
    text = unicodedata.normalize("NFC", text)
    return _TASHKEEL.sub("", text).translate(_ALEFS)


def _proclitics() -> frozenset[str]:
    # conjunction? + preposition? + article?; ل followed by ال is written لل (its alef drops).
    out = set()
    for conj, prep, art in product(("", "و", "ف"), ("", "ب", "ك", "ل"), ("", "ال")):
        out.add(conj + ("لل" if prep == "ل" and art else prep + art))
    return frozenset(out)


_PROCLITICS = _proclitics()
_AR_FEMALE = frozenset(normalize_arabic(w) for w in _ARABIC_FEMALE_WORDS)
_AR_MALE = frozenset(normalize_arabic(w) for w in _ARABIC_MALE_WORDS)
_AR_MALE_EXACT = frozenset(normalize_arabic(w) for w in _ARABIC_MALE_EXACT)


def _arabic_gender(word: str) -> GenderName | None:
    # `word` is one normalised token; try every proclitic that it starts with.
    if word in _AR_MALE_EXACT:
        return "male"
    for prefix in _PROCLITICS:
        if word.startswith(prefix):
            stem = word[len(prefix) :]
            if stem in _AR_FEMALE:
                return "female"
            if stem in _AR_MALE:
                return "male"
    return None


def _count_arabic(text: str) -> GenderCounts:
    male = female = 0
    # Tokenise before unifying alefs so that the madda of مرآة ("mirror") is still visible.
    stripped = _TASHKEEL.sub("", unicodedata.normalize("NFC", text))
    for token in _WORD.findall(stripped):
        if _MIRROR in token:
            continue
        gender = _arabic_gender(token.translate(_ALEFS))
        male += gender == "male"
        female += gender == "female"
    return GenderCounts(male, female)


def _count_english(text: str) -> GenderCounts:
    words = _WORD.findall(text.casefold())
    male = sum(w in ENGLISH_MALE for w in words)
    female = sum(w in ENGLISH_FEMALE for w in words)
    return GenderCounts(male, female)


def count_gender_terms(text: str, lang: Language) -> GenderCounts:
    """Count the male and female words in a caption.

    Parameters
    ----------
    text : str
        A caption, written by a person or generated by a model.
    lang : {"en", "ar"}
        Its language.

    Returns
    -------
    GenderCounts
        Occurrences of male and female words (each occurrence counts).

    Raises
    ------
    DataError
        If ``lang`` is not ``"en"`` or ``"ar"``.
    """
    if lang == "en":
        return _count_english(text)
    if lang == "ar":
        return _count_arabic(text)
    raise DataError(f"Gender words exist for languages 'en' and 'ar', not {lang!r}.")


class StudyTerm(NamedTuple):
    """One gender word of the study's lists, as written (before normalisation)."""

    text: str
    language: Language
    gender: GenderName


def study_terms() -> list[StudyTerm]:
    """Every gender word of both languages' lists (the words ``prepare`` counts), in a fixed order."""
    english = [StudyTerm(w, "en", "male") for w in sorted(ENGLISH_MALE)]
    english += [StudyTerm(w, "en", "female") for w in sorted(ENGLISH_FEMALE)]
    arabic = [StudyTerm(w, "ar", "male") for w in (*_ARABIC_MALE_WORDS, *_ARABIC_MALE_EXACT)]
    arabic += [StudyTerm(w, "ar", "female") for w in _ARABIC_FEMALE_WORDS]
    return english + arabic


def _sum_counts(texts: Iterable[str], lang: Language) -> GenderCounts:
    counts = [count_gender_terms(text, lang) for text in texts]
    return GenderCounts(sum(c.male for c in counts), sum(c.female for c in counts))


def label_captions(en: Sequence[str], ar: Sequence[str]) -> GenderLabel:
    """Label one image from all of its captions in both languages.

    The evidence of both languages is pooled: an image is ``"male"`` or ``"female"`` only when its
    captions name that gender and none names the other. Captions naming both (in one caption, in
    different captions, or English one way and Arabic the other) give ``"ambiguous"``; captions
    naming neither give ``"unknown"``. Nothing is guessed.

    Parameters
    ----------
    en, ar : sequence of str
        The image's English and Arabic captions (either may be empty).

    Returns
    -------
    GenderLabel
        The label and the word counts per language.
    """
    en_counts = _sum_counts(en, "en")
    ar_counts = _sum_counts(ar, "ar")
    male = en_counts.male + ar_counts.male
    female = en_counts.female + ar_counts.female
    label: GenderName
    if male and female:
        label = "ambiguous"
    elif male:
        label = "male"
    elif female:
        label = "female"
    else:
        label = "unknown"
    return GenderLabel(label, en_counts, ar_counts)


_GENDER_VALUES: dict[str, GenderName] = {
    "male": "male",
    "m": "male",
    "man": "male",
    "female": "female",
    "f": "female",
    "woman": "female",
}


def normalize_gender_value(value: object) -> GenderName:
    """Map a value of a user-provided gender column to ``"male"`` or ``"female"``.

    Parameters
    ----------
    value : object
        A cell of the column; ``male/m/man`` and ``female/f/woman`` are accepted in any case and
        with surrounding spaces.

    Returns
    -------
    {"male", "female"}

    Raises
    ------
    DataError
        For any other value, naming it and the accepted values.
    """
    key = str(value).strip().casefold()
    if key in _GENDER_VALUES:
        return _GENDER_VALUES[key]
    allowed = ", ".join(repr(v) for v in _GENDER_VALUES)
    raise DataError(f"Unknown gender value {value!r}; accepted values (any case) are {allowed}.")
