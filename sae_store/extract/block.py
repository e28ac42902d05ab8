"""Computing everything stored for one shard block of samples in one language."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sae_store.errors import SaeStoreError
from sae_store.extract.hooks import capture_layers
from sae_store.models.inputs import build_batch, left_align, special_token_ids, token_roles
from sae_store.models.loader import LoadedModel
from sae_store.store import Block


@dataclass
class BlockData:
    """What the writer stores for one (shard block, language): the arrays of its samples."""

    block: Block
    language: str
    layers: tuple[int, ...]
    sample_ids: list[str]
    activations: np.ndarray
    """float32 ``[layer, sample, token, hidden]``, left-aligned; NaN at padding and failed samples."""
    input_ids: np.ndarray
    """int32 ``[sample, token]``; 0 at padding."""
    token_role: np.ndarray
    """int8 ``[sample, token]`` (:class:`~sae_store.store.TokenRole` codes)."""
    n_tokens: np.ndarray
    """int32 ``[sample]``; 0 for failed samples."""
    errors: np.ndarray
    """object ``[sample]``: why a sample failed, ``""`` if it did not."""
    bf16_exact: bool = False
    """The activations are bfloat16 numbers (the model ran in bf16, or they were rounded on its device)."""

    @property
    def ok(self) -> np.ndarray:
        return self.errors == ""


def compute_block(
    loaded: LoadedModel,
    block: Block,
    language: str,
    prompt: str,
    layers: Sequence[int],
    images: Sequence[Image.Image | None],
    errors: Sequence[str],
    sample_ids: Sequence[str],
    *,
    max_tokens: int,
    expected_tokens: int,
    batch_size: int,
    round_bf16: bool = False,
) -> BlockData:
    """Run the model over the block's images (``batch_size`` at a time) and collect the layers.

    Samples whose image failed to load (``None``) are skipped and keep their error; every other
    sample must take exactly ``expected_tokens`` tokens (the count recorded in the store). With
    ``round_bf16`` the activations are rounded to bfloat16 on the model's device (what
    :func:`~sae_store.store.codecs.round_to_bf16` computes), which costs the writer nothing.
    """
    n, n_layers = block.stop - block.start, len(layers)
    data = BlockData(
        block=block,
        language=language,
        layers=tuple(layers),
        sample_ids=list(sample_ids),
        activations=np.full((n_layers, n, max_tokens, loaded.adapter.hidden_size), np.nan, np.float32),
        input_ids=np.zeros((n, max_tokens), np.int32),
        token_role=np.zeros((n, max_tokens), np.int8),
        n_tokens=np.zeros(n, np.int32),
        errors=np.array(list(errors), dtype=object),
        bf16_exact=round_bf16 or loaded.dtype == torch.bfloat16,
    )
    specials = special_token_ids(loaded.processor.tokenizer)
    todo = [i for i in range(n) if images[i] is not None]
    for first in range(0, len(todo), batch_size):
        rows = todo[first : first + batch_size]
        batch = build_batch(loaded.processor, [images[i] for i in rows], prompt)  # type: ignore[misc]
        mask = batch["attention_mask"]
        lengths = mask.sum(dim=1)
        wrong = [sample_ids[r] for r, m in zip(rows, lengths.tolist(), strict=True) if m != expected_tokens]
        if wrong:
            raise SaeStoreError(
                f"samples {wrong[:5]} take {sorted(set(lengths.tolist()))} tokens in language {language!r}, "
                f"but the store expects {expected_tokens}; the processor does not match the store"
            )
        t = mask.shape[1]
        if t > max_tokens:
            raise SaeStoreError(
                f"a batch of language {language!r} has {t} tokens, more than the store's {max_tokens}"
            )
        roles = token_roles(
            batch["input_ids"],
            mask,
            batch["token_type_ids"],
            specials,
            image_token_id=loaded.adapter.image_token_id,
        )
        data.input_ids[rows, :t] = left_align(batch["input_ids"] * mask, mask).numpy()
        data.token_role[rows, :t] = left_align(roles, mask).numpy()
        data.n_tokens[rows] = lengths.numpy()

        device_mask = mask.to(loaded.device)

        def sink(
            k: int, hidden: torch.Tensor, rows: list[int] = rows, mask: torch.Tensor = device_mask
        ) -> None:
            aligned = left_align(hidden, mask)
            if round_bf16:
                aligned = aligned.to(torch.bfloat16)
            aligned = aligned.to("cpu", torch.float32)
            data.activations[k, rows, : aligned.shape[1]] = aligned.numpy()

        inputs = batch.to(loaded.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
        capture_layers(loaded.model, loaded.adapter, layers, inputs, sink)
        for r, length in zip(rows, lengths.tolist(), strict=True):
            data.activations[:, r, length:] = np.nan
    return data
