"""Metric (a), content positions, gender tokens of the vocabulary and splice quality."""

from __future__ import annotations

import math

import pytest
import torch

from sae_store.errors import DataError
from sae_store.intervene.metrics import (
    SpliceTotals,
    VocabularyTerms,
    content_positions,
    term_score,
    vocabulary_terms,
)
from sae_store.models.loader import LoadedModel


def test_vocabulary_terms_of_the_tiny_tokenizer(tiny: LoadedModel) -> None:
    tok = tiny.processor.tokenizer
    en = vocabulary_terms(tok, "en")
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("▁man", "▁woman", "man", "<0x41>", "<start_of_turn>", "▁the")
    }
    assert ids["▁man"] in en.male.tolist() and ids["man"] in en.male.tolist()
    assert ids["▁woman"] in en.female.tolist()
    assert not set(en.male.tolist()) & set(en.female.tolist())
    assert (
        en.content[ids["▁the"]] and not en.content[ids["<0x41>"]] and not en.content[ids["<start_of_turn>"]]
    )
    ar = vocabulary_terms(tok, "ar")
    assert tok.convert_tokens_to_ids("رجل") in ar.male.tolist()
    assert ids["▁man"] not in ar.male.tolist()


def test_vocabulary_without_gender_words_is_refused(tiny: LoadedModel) -> None:
    class Words:
        def __init__(self, words: list[str]) -> None:
            self.words = words
            self.all_special_ids: list[int] = []
            self.added_tokens_decoder: dict[int, object] = {}

        def __len__(self) -> int:
            return len(self.words)

        def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
            return [self.words[i] for i in ids]

    with pytest.raises(DataError, match="has 1 male and 0 female word tokens for language 'en'"):
        vocabulary_terms(Words(["▁man", "▁tree"]), "en")


def test_term_score_known_values() -> None:
    terms = VocabularyTerms(
        male=torch.tensor([1, 2]), female=torch.tensor([3]), content=torch.ones(5, dtype=torch.bool)
    )
    p = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15], [0.2, 0.05, 0.05, 0.5, 0.2]])
    log_probs = p.log().unsqueeze(0).repeat(2, 1, 1)  # [B=2, L=2, V=5]
    positions = torch.tensor([[True, True], [False, False]])
    score = term_score(log_probs, positions, terms)
    expected = (math.log(0.5 / 0.25) + math.log(0.1 / 0.5)) / 2
    assert score[0].item() == pytest.approx(expected, rel=1e-6)
    assert math.isnan(score[1].item())


def test_content_positions_take_the_first_letters() -> None:
    content = torch.tensor([False, True, True, False, True])  # ids 0 and 3 are punctuation/special
    ids = torch.tensor([[0, 1, 3, 2, 4, 1], [3, 3, 4, 0, 0, 0]])
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    chosen = content_positions(ids, mask, content, 2)
    assert chosen.tolist() == [
        [False, True, False, True, False, False],
        [False, False, True, False, False, False],
    ]


def test_splice_totals_recovered_fractions() -> None:
    torch.manual_seed(0)
    clean = torch.log_softmax(torch.randn(2, 3, 7), -1)
    zero = torch.log_softmax(torch.randn(2, 3, 7), -1)
    ids = torch.randint(0, 7, (2, 3))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    perfect, useless = SpliceTotals(), SpliceTotals()
    perfect.add(clean, clean, zero, ids, mask)
    useless.add(clean, zero, zero, ids, mask)
    good, bad = perfect.result(), useless.result()
    assert good.ce_recovered == pytest.approx(1.0) and good.kl_sae == pytest.approx(0.0, abs=1e-7)
    assert good.kl_recovered == pytest.approx(1.0)
    assert bad.ce_recovered == pytest.approx(0.0) and bad.kl_recovered == pytest.approx(0.0)
    nll = -clean.gather(-1, ids.unsqueeze(-1)).squeeze(-1)[mask].mean()
    assert good.ce_clean == pytest.approx(float(nll), rel=1e-6)
    kl = torch.nn.functional.kl_div(zero, clean, log_target=True, reduction="none").sum(-1)[mask].mean()
    assert good.kl_zero == pytest.approx(float(kl), rel=1e-5)
    assert good.n_tokens == 5
