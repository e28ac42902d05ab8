"""One intervention experiment at one layer: baseline, targeted edit, random controls, dose-response,
regenerated captions and splice quality, per language.

Three passes over the samples of each language:

1. clean: the teacher-forced baseline caption without an edit gives the baseline score (metric (a)),
   per-gender feature means (the neutralise targets), which features fire (the pool random controls
   are drawn from: a dead feature would make a random control trivially inert) and splice quality;
2. edited: the same inputs with the targeted edit, each random control set and, for ``amplify``,
   each dose ``alpha``; effect = score with the edit minus the baseline score, per sample;
3. regenerated: greedy captions with the targeted edit, to count gender terms (metric (b)).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from sae_store.data.gender import Language
from sae_store.errors import SaeStoreError
from sae_store.intervene.batches import (
    TeacherForced,
    caption_log_probs,
    position_mask,
    prompt_batch,
    teacher_forced,
)
from sae_store.intervene.captions import Caption, EditFactory, generate_captions
from sae_store.intervene.config import CaptionConfig, InterventionConfig
from sae_store.intervene.features import random_feature_sets
from sae_store.intervene.hooks import FeatureEdit, SAELike, check_sae, edit_layer, layer_hook
from sae_store.intervene.metrics import (
    SpliceQuality,
    SpliceTotals,
    VocabularyTerms,
    content_positions,
    term_score,
    vocabulary_terms,
)
from sae_store.models.loader import LoadedModel
from sae_store.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = ["LanguageEffects", "LanguageSamples", "LayerResult", "run_intervention"]


@dataclass(frozen=True)
class LanguageSamples:
    """The samples of one language an experiment runs on."""

    language: Language
    prompt: str
    images: Sequence[Image.Image]
    """One image per sample; may be lazy (slicing returns a list of images)."""
    genders: np.ndarray
    """Label per sample (``"male"``/``"female"``)."""
    captions: Sequence[Sequence[int]]
    """The model's own baseline caption per sample (token ids), teacher-forced in passes 1 and 2."""


@dataclass
class LanguageEffects:
    """Per-sample results of one language."""

    baseline_score: np.ndarray
    """Metric (a) without the edit, ``[n]``."""
    effect: np.ndarray
    """Metric (a) with the targeted edit minus the baseline, ``[n]``."""
    control_effects: np.ndarray
    """``[n_controls, n]``, same for each random set."""
    dose_effects: np.ndarray
    """``[len(dose_alphas), n]`` (``"amplify"``; ``[0, n]`` otherwise)."""
    splice: SpliceQuality
    targets: dict[int, float] = field(default_factory=dict)
    """Neutralise target (mean over both genders) per edited or control feature."""
    edited_captions: list[Caption] | None = None
    """Captions regenerated with the targeted edit (None without ``regenerate``)."""


@dataclass
class LayerResult:
    """Everything one experiment measured."""

    layer: int
    features: tuple[int, ...]
    control_sets: list[tuple[int, ...]]
    config: InterventionConfig
    languages: dict[str, LanguageEffects]


class _FeatureStats:
    # Per-gender sums of feature activations over the edited positions, and firing counts.
    def __init__(self, d_sae: int) -> None:
        self.sums = {g: torch.zeros(d_sae, dtype=torch.float64) for g in ("male", "female")}
        self.tokens = {"male": 0, "female": 0}
        self.fired = torch.zeros(d_sae, dtype=torch.int64)

    def add(self, f: torch.Tensor, mask: torch.Tensor, genders: Sequence[str]) -> None:
        """Features ``f`` [B, T, d_sae] of one batch, ``mask`` [B, T] of the positions, a label per row."""
        self.fired += ((f > 0) & mask.unsqueeze(-1)).sum(dim=(0, 1)).cpu()
        per_row = torch.einsum("bt,btf->bf", mask.to(f.dtype), f).double().cpu()
        for b, gender in enumerate(genders):
            if gender in self.sums:
                self.sums[gender] += per_row[b]
                self.tokens[gender] += int(mask[b].sum())

    def targets(self) -> torch.Tensor:
        empty = [g for g, n in self.tokens.items() if n == 0]
        if empty:
            raise SaeStoreError(
                f"neutralise needs feature means over male and female samples, but no {empty[0]}-labelled "
                "sample has edited positions; include samples of both genders"
            )
        return (self.sums["male"] / self.tokens["male"] + self.sums["female"] / self.tokens["female"]) / 2


def _batches(samples: LanguageSamples, batch_size: int, progress: bool, desc: str) -> Any:
    starts = range(0, len(samples.genders), batch_size)
    for start in progress_bar(starts, desc=f"{desc} {samples.language}", unit="batch", enabled=progress):
        yield slice(start, start + batch_size)


def _scores(
    loaded: LoadedModel, tf: TeacherForced, terms: VocabularyTerms, n_positions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    lp = caption_log_probs(loaded, tf)
    positions = content_positions(tf.caption_ids, tf.caption_mask, terms.content, n_positions)
    return lp, term_score(lp, positions, terms)


class _Clean(NamedTuple):
    terms: VocabularyTerms
    baseline: np.ndarray
    stats: _FeatureStats
    splice: SpliceQuality


def _clean_pass(
    loaded: LoadedModel,
    module: torch.nn.Module,
    sae: SAELike,
    samples: LanguageSamples,
    config: InterventionConfig,
    progress: bool,
) -> _Clean:
    terms = vocabulary_terms(loaded.processor.tokenizer, samples.language)
    stats, splice = _FeatureStats(sae.d_sae), SpliceTotals()
    scores = []
    dtype = sae.W_dec.dtype
    for sl in _batches(samples, config.batch_size, progress, "clean"):
        tf = teacher_forced(
            loaded, prompt_batch(loaded, samples.images[sl], samples.prompt), samples.captions[sl]
        )
        mask = position_mask(loaded, tf.inputs, config.positions).prompt

        def record(
            hidden: torch.Tensor, mask: torch.Tensor = mask, genders: Any = samples.genders[sl]
        ) -> None:
            stats.add(sae.encode(hidden.to(dtype)), mask.to(hidden.device), list(genders))

        with torch.no_grad():
            with layer_hook(module, record):
                clean, score = _scores(loaded, tf, terms, config.n_positions)
            with layer_hook(module, lambda h: sae.decode(sae.encode(h.to(dtype))).to(h.dtype)):
                spliced = caption_log_probs(loaded, tf)
            with layer_hook(module, torch.zeros_like):
                zeroed = caption_log_probs(loaded, tf)
        splice.add(clean, spliced, zeroed, tf.caption_ids, tf.caption_mask)
        scores.append(score.cpu().numpy())
    return _Clean(terms, np.concatenate(scores), stats, splice.result())


def _edited_pass(
    loaded: LoadedModel,
    module: torch.nn.Module,
    sae: SAELike,
    samples: LanguageSamples,
    config: InterventionConfig,
    terms: VocabularyTerms,
    edits: list[FeatureEdit],
    progress: bool,
) -> np.ndarray:
    scores: list[list[np.ndarray]] = [[] for _ in edits]
    for sl in _batches(samples, config.batch_size, progress, f"{len(edits)} edits"):
        tf = teacher_forced(
            loaded, prompt_batch(loaded, samples.images[sl], samples.prompt), samples.captions[sl]
        )
        mask = position_mask(loaded, tf.inputs, config.positions)
        for k, edit in enumerate(edits):
            with edit_layer(module, sae, edit, mask):
                scores[k].append(_scores(loaded, tf, terms, config.n_positions)[1].cpu().numpy())
    return np.stack([np.concatenate(s) for s in scores]) if edits else np.zeros((0, len(samples.genders)))


def _edit_factory(
    loaded: LoadedModel, module: torch.nn.Module, sae: SAELike, edit: FeatureEdit
) -> EditFactory:
    # Generation builds one prompt batch at a time; each needs its own position mask.
    def factory(inputs: dict[str, torch.Tensor]) -> AbstractContextManager[Any]:
        return edit_layer(module, sae, edit, position_mask(loaded, inputs, edit.positions))

    return factory


def _edit_maker(
    base: FeatureEdit, targets: dict[int, float]
) -> Callable[[tuple[int, ...], float], FeatureEdit]:
    # The targeted edit with other features or alpha; neutralise targets looked up per feature.
    def make(features: tuple[int, ...], alpha: float) -> FeatureEdit:
        new_targets = tuple(targets[i] for i in features) if base.mode == "neutralise" else None
        return replace(base, features=features, alpha=alpha, targets=new_targets)

    return make


def _length(config: InterventionConfig) -> dict[str, int]:
    # regenerated captions as long as configured, else as long as CaptionConfig makes them
    return {} if config.max_new_tokens is None else {"max_new_tokens": config.max_new_tokens}


def run_intervention(
    loaded: LoadedModel,
    sae: SAELike,
    layer: int,
    features: Sequence[int],
    samples: Sequence[LanguageSamples],
    config: InterventionConfig,
    *,
    sae_layer: int | None = None,
    progress: bool = False,
) -> LayerResult:
    """Run one intervention experiment at ``layer`` (see the module docstring for the passes).

    Parameters
    ----------
    loaded : LoadedModel
        The model the SAE was trained on.
    sae : SAELike
        The SAE of ``layer``.
    layer : int
        Decoder layer whose output is edited.
    features : sequence of int
        The targeted feature set F (non-empty).
    samples : sequence of LanguageSamples
        One entry per language, each with male- and female-labelled samples.
    config : InterventionConfig
        Mode, alpha, positions, controls, dose-response, batch size.
    sae_layer : int, optional
        The layer the SAE records it was trained on (refused if it is not ``layer``).
    progress : bool
        Show progress per pass and language.

    Raises
    ------
    SaeStoreError
        For an SAE that does not fit the layer or model, feature indices ``>= d_sae``, an empty
        feature set or a language without male or female samples.
    """
    base = FeatureEdit(
        mode=config.mode,
        features=tuple(features),
        alpha=config.alpha,
        positions=config.positions,
        targets=tuple(0.0 for _ in features) if config.mode == "neutralise" else None,
    )
    check_sae(sae, layer=layer, d_in=loaded.adapter.hidden_size, edit=base, sae_layer=sae_layer)
    if not base.features:
        raise SaeStoreError("the targeted feature set is empty; name at least one feature")
    for s in samples:
        if not np.array_equal(s.genders, samples[0].genders) or len(s.captions) != len(s.genders):
            raise SaeStoreError(
                f"language {s.language!r} does not hold the same samples as {samples[0].language!r}: every "
                "language needs one caption per sample and the samples in the same order"
            )
        counts = {g: int(np.sum(np.asarray(s.genders) == g)) for g in ("male", "female")}
        if min(counts.values()) == 0:
            raise SaeStoreError(
                f"language {s.language!r} has {counts['male']} male- and {counts['female']} female-labelled "
                "samples; the experiment compares both groups, so each needs at least one"
            )
    module = loaded.adapter.decoder_layers(loaded.model)[layer]
    clean = {s.language: _clean_pass(loaded, module, sae, s, config, progress) for s in samples}
    for lang, c in clean.items():
        missing = int(np.isnan(c.baseline).sum())
        if missing:
            log.warning(
                "%s: %d of %d baseline captions have no word token in their first positions; those samples "
                "carry no effect (NaN)",
                lang, missing, c.baseline.size,
            )  # fmt: skip
    fired = torch.stack([c.stats.fired for c in clean.values()]).sum(dim=0)
    pool = torch.nonzero(fired > 0).flatten().tolist()
    controls = (
        random_feature_sets(
            config.n_controls, len(base.features), pool=pool, exclude=base.features, seed=config.seed
        )
        if config.n_controls
        else []
    )

    results: dict[str, LanguageEffects] = {}
    for s in samples:
        terms, baseline, stats, splice = clean[s.language]
        targets: dict[int, float] = {}
        if config.mode == "neutralise":
            means = stats.targets()
            targets = {i: float(means[i]) for fs in [base.features, *controls] for i in fs}
        make = _edit_maker(base, targets)
        dose = config.dose_alphas if config.mode == "amplify" else ()
        edits = [
            make(base.features, config.alpha),
            *(make(c, config.alpha) for c in controls),
            *(make(base.features, a) for a in dose),
        ]
        scores = _edited_pass(loaded, module, sae, s, config, terms, edits, progress) - baseline
        edited = None
        if config.regenerate:
            caption_config = CaptionConfig(batch_size=config.batch_size, **_length(config))
            factory = _edit_factory(loaded, module, sae, edits[0])
            edited = generate_captions(
                loaded, s.images, s.prompt, s.language, config=caption_config, edit=factory, progress=progress
            )
        results[s.language] = LanguageEffects(
            baseline_score=baseline,
            effect=scores[0],
            control_effects=scores[1 : 1 + len(controls)],
            dose_effects=scores[1 + len(controls) :],
            splice=splice,
            targets=targets,
            edited_captions=edited,
        )
    return LayerResult(
        layer=layer, features=base.features, control_sets=controls, config=config, languages=results
    )
