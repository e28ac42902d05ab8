"""Greedy caption generation per sample and language, optionally with an edit inside the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
from PIL import Image

from sae_store.data.gender import Language, count_gender_terms
from sae_store.intervene.batches import prompt_batch
from sae_store.intervene.config import CaptionConfig
from sae_store.models.loader import LoadedModel
from sae_store.progress import progress_bar

__all__ = ["Caption", "EditFactory", "generate_captions"]

#: Builds the context manager that edits the model for one prompt batch (its masks need the batch).
EditFactory = Callable[[dict[str, torch.Tensor]], AbstractContextManager[Any]]


class Caption(NamedTuple):
    """One generated caption."""

    text: str
    """Decoded text without special tokens."""
    token_ids: tuple[int, ...]
    """Generated token ids up to (not including) the first end-of-turn/end-of-sequence token."""
    male: int
    """Male gender terms in :attr:`text`."""
    female: int
    """Female gender terms in :attr:`text`."""


def _stop_ids(loaded: LoadedModel) -> set[int]:
    model: Any = loaded.model
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    tokenizer = loaded.processor.tokenizer
    ids.update(i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None)
    return {int(i) for i in ids}


def _generation_config(loaded: LoadedModel, max_new_tokens: int) -> Any:
    from transformers import GenerationConfig

    # A fresh greedy config: Gemma's own samples (do_sample, top_k, top_p) and would warn if overridden.
    model: Any = loaded.model
    base = model.generation_config
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=base.eos_token_id,
        pad_token_id=base.pad_token_id
        if base.pad_token_id is not None
        else loaded.processor.tokenizer.pad_token_id,
        bos_token_id=base.bos_token_id,
    )


def generate_captions(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    prompt: str,
    language: Language,
    *,
    config: CaptionConfig | None = None,
    edit: EditFactory | None = None,
    progress: bool = False,
) -> list[Caption]:
    """Caption ``images`` greedily with ``prompt``, counting gender terms in each caption.

    Parameters
    ----------
    loaded : LoadedModel
        The model and its processor.
    images : sequence of PIL.Image.Image
        One image per sample (read lazily, batch by batch, if the sequence is lazy).
    prompt : str
        The instruction in ``language``.
    language : {"en", "ar"}
        Selects the gender word list.
    config : CaptionConfig, optional
        Generation length and batch size.
    edit : EditFactory, optional
        ``edit(inputs)`` returns a context manager active during each batch's generation (e.g. an
        :func:`~sae_store.intervene.hooks.edit_layer` with masks for that batch).
    progress : bool
        Show progress over batches (a bar on a terminal, log lines elsewhere).

    Returns
    -------
    list of Caption
        In the order of ``images``.
    """
    config = config or CaptionConfig()
    gen_config = _generation_config(loaded, config.max_new_tokens)
    stop = _stop_ids(loaded)
    model: Any = loaded.model
    tokenizer = loaded.processor.tokenizer
    out: list[Caption] = []
    starts = range(0, len(images), config.batch_size)
    for start in progress_bar(starts, desc=f"captions {language}", unit="batch", enabled=progress):
        inputs = prompt_batch(loaded, images[start : start + config.batch_size], prompt)
        with edit(inputs) if edit is not None else nullcontext(), torch.no_grad():
            generated = model.generate(**inputs, generation_config=gen_config)
        new = generated[:, inputs["input_ids"].shape[1] :].tolist()
        for row in new:
            ids: list[int] = []
            for token in row:
                if token in stop:
                    break
                ids.append(int(token))
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            counts = count_gender_terms(text, language)
            out.append(Caption(text, tuple(ids), counts.male, counts.female))
    return out
