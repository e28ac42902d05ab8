"""Effect metrics computed from the model's next-token distributions over a teacher-forced caption.

* Metric (a), :func:`term_score`: at the first content positions of the model's own baseline caption,
  ``log P(male term) - log P(female term)``, where ``P(male term)`` is the probability mass of every
  vocabulary token that is a male word of the caption's language (likewise female), averaged over
  those positions. An intervention's effect on a sample is its score with the edit minus without.
* Splice quality, :class:`SpliceTotals`: cross-entropy of the caption tokens and KL divergence from the
  clean model when the SAE reconstruction (or zeros) replaces the layer's output.

Gender tokens are found by running the data preparation's word matcher
(:func:`~sae_store.data.gender.count_gender_terms`) on every vocabulary entry, so the token sets follow
the same English and Arabic word lists (Arabic proclitics included) as the caption counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from sae_store.data.gender import Language, count_gender_terms
from sae_store.errors import DataError
from sae_store.models.inputs import special_token_ids

__all__ = [
    "LossTotals",
    "SpliceQuality",
    "SpliceTotals",
    "VocabularyTerms",
    "ce_loss_score",
    "content_positions",
    "kl_div_score",
    "term_score",
    "vocabulary_terms",
]

_LETTER = re.compile(r"[^\W\d_]")
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class VocabularyTerms:
    """Vocabulary entries that are gender words, and those that carry letters, for one language."""

    male: torch.Tensor
    """int64 ids of tokens that are a male word (and no female one)."""
    female: torch.Tensor
    """int64 ids of tokens that are a female word (and no male one)."""
    content: torch.Tensor
    """bool ``[V]``: the token holds a letter and is not a special or byte token."""


def vocabulary_terms(tokenizer: Any, language: Language) -> VocabularyTerms:
    """Classify every vocabulary token of ``tokenizer`` for ``language``.

    Raises
    ------
    DataError
        If the vocabulary has no male or no female word token for ``language`` (metric (a) would be
        undefined).
    """
    specials = special_token_ids(tokenizer)
    size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    male, female = [], []
    content = torch.zeros(size, dtype=torch.bool)
    for i, token in enumerate(tokens):
        if token is None or i in specials or _BYTE_TOKEN.match(token):
            continue
        text = token.replace("\u2581", " ")  # sentencepiece's word-boundary marker
        if not _LETTER.search(text):
            continue
        content[i] = True
        counts = count_gender_terms(text, language)
        if counts.male and not counts.female:
            male.append(i)
        elif counts.female and not counts.male:
            female.append(i)
    if not male or not female:
        raise DataError(
            f"the tokenizer has {len(male)} male and {len(female)} female word tokens for language "
            f"{language!r}; the term log-probability metric needs both (is this the model's tokenizer?)"
        )
    return VocabularyTerms(torch.tensor(male), torch.tensor(female), content)


def content_positions(
    caption_ids: torch.Tensor, caption_mask: torch.Tensor, content: torch.Tensor, n_positions: int
) -> torch.Tensor:
    """The first ``n_positions`` caption positions whose token holds a letter, per row.

    Returns
    -------
    torch.Tensor
        bool ``[B, L]``; fewer than ``n_positions`` True in rows with a shorter caption.
    """
    is_content = content.to(caption_ids.device)[caption_ids] & caption_mask
    rank = torch.cumsum(is_content.to(torch.int64), dim=1)
    return is_content & (rank <= n_positions)


def term_score(log_probs: torch.Tensor, positions: torch.Tensor, terms: VocabularyTerms) -> torch.Tensor:
    """Metric (a) per row: mean over ``positions`` of ``log P(male terms) - log P(female terms)``.

    Parameters
    ----------
    log_probs : torch.Tensor
        ``[B, L, V]`` next-token log-probabilities at the caption positions.
    positions : torch.Tensor
        bool ``[B, L]`` (from :func:`content_positions`).
    terms : VocabularyTerms
        Gender word tokens of the caption's language.

    Returns
    -------
    torch.Tensor
        float64 ``[B]``; NaN for rows without positions.
    """
    device = log_probs.device
    male = torch.logsumexp(log_probs[..., terms.male.to(device)], dim=-1)
    female = torch.logsumexp(log_probs[..., terms.female.to(device)], dim=-1)
    gap = torch.where(positions, (male - female).double(), 0.0)
    n = positions.sum(dim=1)
    return torch.where(n > 0, gap.sum(dim=1) / n.clamp(min=1), torch.nan)


@dataclass(frozen=True)
class SpliceQuality:
    """How well the SAE reconstruction stands in for the layer output, on caption tokens.

    ``ce_recovered = (ce_zero - ce_sae) / (ce_zero - ce_clean)``: 1 when splicing the SAE costs nothing,
    0 when it is as bad as zeroing the layer output. ``kl_recovered = 1 - kl_sae / kl_zero``. These are
    SAEBench's ``ce_loss_score`` and ``kl_div_score`` (:func:`ce_loss_score`, :func:`kl_div_score`).
    """

    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_recovered: float
    kl_sae: float
    """Mean KL(clean || SAE-spliced) per caption token, nats."""
    kl_zero: float
    """Mean KL(clean || zero-ablated) per caption token, nats."""
    kl_recovered: float
    n_tokens: int


def ce_loss_score(ce_clean: float, ce_sae: float, ce_ablated: float) -> float:
    """SAEBench's ``ce_loss_score``: (CE ablated - CE with the SAE) / (CE ablated - CE clean); NaN when
    ablating changes nothing."""
    span = ce_ablated - ce_clean
    return (ce_ablated - ce_sae) / span if span else float("nan")


def kl_div_score(kl_sae: float, kl_ablated: float) -> float:
    """SAEBench's ``kl_div_score``: (KL ablated - KL with the SAE) / KL ablated; NaN when ablating
    changes nothing."""
    return (kl_ablated - kl_sae) / kl_ablated if kl_ablated else float("nan")


@dataclass
class LossTotals:
    """Sums over caption tokens of one run's cross-entropy and of KL(clean || run)."""

    ce: float = 0.0
    kl: float = 0.0
    n_tokens: int = 0

    def add(
        self, clean: torch.Tensor, run: torch.Tensor, caption_ids: torch.Tensor, caption_mask: torch.Tensor
    ) -> None:
        """Add one batch: log-probabilities ``[B, L, V]`` of the clean model and of this run, caption ids
        and mask ``[B, L]``."""
        nll = -run.gather(-1, caption_ids.unsqueeze(-1)).squeeze(-1)
        per_token = (clean.exp() * (clean - run)).sum(dim=-1)
        self.ce += float(nll[caption_mask].double().sum())
        self.kl += float(per_token[caption_mask].double().sum())
        self.n_tokens += int(caption_mask.sum())

    def __add__(self, other: LossTotals) -> LossTotals:
        return LossTotals(self.ce + other.ce, self.kl + other.kl, self.n_tokens + other.n_tokens)

    @property
    def mean_ce(self) -> float:
        """Mean cross-entropy per caption token, nats (NaN without tokens)."""
        return self.ce / self.n_tokens if self.n_tokens else float("nan")

    @property
    def mean_kl(self) -> float:
        """Mean KL(clean || run) per caption token, nats (NaN without tokens)."""
        return self.kl / self.n_tokens if self.n_tokens else float("nan")


@dataclass
class SpliceTotals:
    """Running sums of the clean, SAE-spliced and zero-ablated runs over batches."""

    clean: LossTotals = field(default_factory=LossTotals)
    sae: LossTotals = field(default_factory=LossTotals)
    zero: LossTotals = field(default_factory=LossTotals)

    def add(
        self,
        clean: torch.Tensor,
        sae: torch.Tensor,
        zero: torch.Tensor,
        caption_ids: torch.Tensor,
        caption_mask: torch.Tensor,
    ) -> None:
        """Add one batch: log-probabilities ``[B, L, V]`` of the three runs, caption ids and mask."""
        for totals, lp in ((self.clean, clean), (self.sae, sae), (self.zero, zero)):
            totals.add(clean, lp, caption_ids, caption_mask)

    def result(self) -> SpliceQuality:
        """Means per token and the recovered fractions (NaN when undefined)."""
        ce_clean, ce_sae, ce_zero = self.clean.mean_ce, self.sae.mean_ce, self.zero.mean_ce
        kl_sae, kl_zero = self.sae.mean_kl, self.zero.mean_kl
        return SpliceQuality(
            ce_clean=ce_clean,
            ce_sae=ce_sae,
            ce_zero=ce_zero,
            ce_recovered=ce_loss_score(ce_clean, ce_sae, ce_zero),
            kl_sae=kl_sae,
            kl_zero=kl_zero,
            kl_recovered=kl_div_score(kl_sae, kl_zero),
            n_tokens=self.clean.n_tokens,
        )
