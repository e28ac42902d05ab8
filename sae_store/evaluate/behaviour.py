"""Behaviour preservation: each SAE spliced into the running model at its layer, on the study's prompts
with their images, teacher-forcing each sample's reference caption.

Per batch the clean model runs once (recording its image features and the layer's output: the other
runs start from them, :mod:`.replay`); then, for each splice (``image``, ``text`` or ``all`` positions,
:func:`~sae_store.intervene.batches.position_mask`), the layer's output at those positions is replaced
(a forward hook, :func:`~sae_store.intervene.hooks.layer_hook`) by zeros, by the mean stored residual
of the position's token role and language (mean ablation, optional), and by each SAE's
reconstruction. Cross-entropy of the caption tokens and KL(clean || run) are summed per language
(:class:`~sae_store.intervene.metrics.LossTotals`) and scored as SAEBench does
(:func:`~sae_store.intervene.metrics.ce_loss_score`, :func:`~sae_store.intervene.metrics.kl_div_score`):
against zero ablation, and against mean ablation as a second baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sae_store.evaluate.config import EvaluateConfig
from sae_store.evaluate.replay import Replay
from sae_store.intervene.batches import caption_log_probs, position_mask, prompt_batch, teacher_forced
from sae_store.intervene.generation import LazyImages
from sae_store.intervene.hooks import SAELike, layer_hook
from sae_store.intervene.metrics import LossTotals, ce_loss_score, kl_div_score
from sae_store.models.inputs import special_token_ids, token_roles
from sae_store.models.loader import LoadedModel
from sae_store.progress import progress_bar
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.results import read_labels

#: The metrics of one (language, splice), by SAEBench's names where it has them.
BEHAVIOUR_METRICS = (
    "tokens",
    "ce_loss_without_sae",
    "ce_loss_with_sae",
    "ce_loss_with_ablation",
    "ce_loss_score",
    "kl_div_with_sae",
    "kl_div_with_ablation",
    "kl_div_score",
    "ce_loss_with_mean_ablation",
    "ce_loss_score_mean_ablation",
    "kl_div_with_mean_ablation",
    "kl_div_score_mean_ablation",
)
#: Run names of the two baselines (an SAE's run is named by its set).
ZERO, MEAN = "zero ablation", "mean ablation"


@dataclass(frozen=True)
class LanguageCaptions:
    """One language's samples for the model runs."""

    prompt: str
    images: Sequence[Image.Image]
    """One image per sample (may be lazy: slicing returns a list)."""
    captions: Sequence[Sequence[int]]
    """The reference caption's token ids per sample (empty: the sample adds no tokens)."""


@dataclass
class BehaviourTotals:
    """Loss totals of the clean model and of every run, per language and splice."""

    clean: dict[int, LossTotals] = field(default_factory=dict)
    runs: dict[tuple[str, int, str], LossTotals] = field(default_factory=dict)

    def _sum(self, parts: list[LossTotals]) -> LossTotals:
        return sum(parts, LossTotals())

    def metrics(self, name: str, language: int | None, splice: str) -> dict[str, float]:
        """The metrics of SAE set ``name`` at one language (None: all) and splice."""
        langs = [g for g in self.clean if language in (None, g)]
        clean = self._sum([self.clean[g] for g in langs])
        run = {r: self._sum([self.runs[(r, g, splice)] for g in langs if (r, g, splice) in self.runs])
               for r in (name, ZERO, MEAN)}  # fmt: skip
        sae, zero, mean = run[name], run[ZERO], run[MEAN]
        has_mean = mean.n_tokens > 0
        return {
            "tokens": clean.n_tokens,
            "ce_loss_without_sae": clean.mean_ce,
            "ce_loss_with_sae": sae.mean_ce,
            "ce_loss_with_ablation": zero.mean_ce,
            "ce_loss_score": ce_loss_score(clean.mean_ce, sae.mean_ce, zero.mean_ce),
            "kl_div_with_sae": sae.mean_kl,
            "kl_div_with_ablation": zero.mean_kl,
            "kl_div_score": kl_div_score(sae.mean_kl, zero.mean_kl),
            "ce_loss_with_mean_ablation": mean.mean_ce,
            "ce_loss_score_mean_ablation": (
                ce_loss_score(clean.mean_ce, sae.mean_ce, mean.mean_ce) if has_mean else float("nan")
            ),
            "kl_div_with_mean_ablation": mean.mean_kl,
            "kl_div_score_mean_ablation": kl_div_score(sae.mean_kl, mean.mean_kl)
            if has_mean
            else float("nan"),
        }


def _replace_at(mask: Tensor, new: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """A hook body putting ``new(hidden)`` where ``mask`` [B, T] is True and keeping the rest."""

    def fn(hidden: Tensor) -> Tensor:
        m = mask.to(hidden.device).unsqueeze(-1)
        return torch.where(m, new(hidden).to(hidden.dtype), hidden)

    return fn


def _lookup(table: Tensor, roles: Tensor) -> Callable[[Tensor], Tensor]:
    """Mean ablation: each position's row of ``table`` [4, d_in] by its token role ``roles`` [B, T]."""

    def fn(hidden: Tensor) -> Tensor:
        return table[roles.to(hidden.device)]

    return fn


def _reconstruct(sae: SAELike) -> Callable[[Tensor], Tensor]:
    def fn(hidden: Tensor) -> Tensor:
        return sae.decode(sae.encode(hidden.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)))

    return fn


@torch.no_grad()
def measure_behaviour(
    loaded: LoadedModel,
    layer: int,
    languages: Mapping[int, LanguageCaptions],
    saes: Mapping[str, SAELike],
    means: Mapping[int, Tensor] | None,
    config: EvaluateConfig,
    *,
    progress: bool = True,
) -> BehaviourTotals:
    """Run the clean model, the ablations and every SAE of ``saes`` (by set name) spliced in at
    ``layer``, for each language of ``languages`` (by store position) and each ``config.splice``.

    ``means`` holds, per language, the mean residual of each token role [4, d_in] (rows by
    :class:`~sae_store.roles.TokenRole` code) for mean ablation; None leaves it out.
    """
    layers = loaded.adapter.decoder_layers(loaded.model)
    module, replay = layers[layer], Replay(loaded.model, layers, layer)
    specials = special_token_ids(loaded.processor.tokenizer)
    out = BehaviourTotals()
    for g, data in languages.items():
        out.clean[g] = LossTotals()
        starts = range(0, len(data.captions), config.batch_size)
        for start in progress_bar(starts, desc=f"layer {layer} model runs", unit="batch", enabled=progress):
            stop = start + config.batch_size
            inputs = prompt_batch(loaded, data.images[start:stop], data.prompt)
            tf = teacher_forced(loaded, inputs, data.captions[start:stop])
            with replay.record():
                clean = caption_log_probs(loaded, tf)
            out.clean[g].add(clean, clean, tf.caption_ids, tf.caption_mask)
            ids, attention = tf.inputs["input_ids"], tf.inputs["attention_mask"]
            image_id = loaded.adapter.image_token_id
            roles = token_roles(
                ids, attention, tf.inputs.get("token_type_ids"), specials, image_token_id=image_id
            )
            roles = roles.long()
            runs: dict[str, Callable[[Tensor], Tensor]] = {ZERO: torch.zeros_like}
            if means is not None:
                table = means[g].to(device=loaded.device, dtype=loaded.dtype)
                runs[MEAN] = _lookup(table, roles)
            runs.update({name: _reconstruct(sae) for name, sae in saes.items()})
            for splice in config.splice:
                mask = position_mask(loaded, tf.inputs, splice).prompt
                for name, new in runs.items():
                    with replay.replay(), layer_hook(module, _replace_at(mask, new)):
                        lp = caption_log_probs(loaded, tf)
                    out.runs.setdefault((name, g, splice), LossTotals()).add(
                        clean, lp, tf.caption_ids, tf.caption_mask
                    )
    return out


def language_captions(
    store: ActivationStore, loaded: LoadedModel, samples: np.ndarray, images: LazyImages, caption_tokens: int
) -> dict[int, LanguageCaptions]:
    """Per language (by store position) the evaluated ``samples`` whose extraction did not fail and that
    have a reference caption: the language's prompt, their images and caption tokens."""
    labels = read_labels(store)
    failed = np.asarray(store.array(S.EXTRACT_ERROR)[...]) != ""
    prompts = store.attrs.get("prompts", {})
    out = {}
    for g, lang in enumerate(store.layout.languages):
        ids = caption_ids(loaded.processor.tokenizer, labels.captions[lang][samples], caption_tokens)
        keep = [j for j, s in enumerate(samples) if not failed[g, s] and ids[j]]
        if keep and prompts.get(lang):
            paths = LazyImages([images.paths[int(samples[j])] for j in keep])
            out[g] = LanguageCaptions(prompts[lang], paths, [ids[j] for j in keep])
    return out


def caption_ids(tokenizer: Any, captions: np.ndarray, limit: int) -> list[list[int]]:
    """Token ids of each sample's first reference caption (captions are newline-separated), at most
    ``limit`` of them."""
    first = [str(c).strip().split("\n")[0].strip() for c in captions]
    encoded = tokenizer(first, add_special_tokens=False)["input_ids"]
    return [list(ids)[:limit] for ids in encoded]
