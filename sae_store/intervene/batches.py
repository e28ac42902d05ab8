"""Model inputs for interventions: prompt batches, teacher-forced captions and the positions to edit.

A teacher-forced batch is the left-padded prompt batch followed by each sample's baseline caption,
right-padded: every row's caption then starts at the same column ``T_prompt``, so the logits that
predict caption token ``j`` sit at column ``T_prompt - 1 + j`` for all rows. Padding on either side
is masked out; Gemma's rotary positions are relative, so a left-padded row computes the same values
as the row alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from sae_store.intervene.config import Positions
from sae_store.intervene.hooks import PositionMask
from sae_store.models.inputs import build_batch, special_token_ids, token_roles
from sae_store.models.loader import LoadedModel
from sae_store.roles import TokenRole

__all__ = ["TeacherForced", "caption_log_probs", "position_mask", "prompt_batch", "teacher_forced"]


def prompt_batch(loaded: LoadedModel, images: Sequence[Image.Image], prompt: str) -> dict[str, torch.Tensor]:
    """The model inputs for ``images`` with ``prompt``, on the model's device and dtype."""
    batch = build_batch(loaded.processor, list(images), prompt)
    out = {k: v.to(loaded.device) for k, v in batch.items()}
    out["pixel_values"] = out["pixel_values"].to(loaded.dtype)
    return out


def position_mask(loaded: LoadedModel, inputs: dict[str, torch.Tensor], positions: Positions) -> PositionMask:
    """Which positions of ``inputs`` an edit at ``positions`` changes, and whether new tokens are.

    ``"image"``: image soft tokens; ``"text"``: text tokens (not special tokens, not padding) and
    every token generated after the prompt; ``"all"``: every non-padding token.
    """
    roles = token_roles(
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs.get("token_type_ids"),
        special_token_ids(loaded.processor.tokenizer),
        image_token_id=loaded.adapter.image_token_id,
    )
    if positions == "image":
        mask = roles == int(TokenRole.IMAGE)
    elif positions == "text":
        mask = roles == int(TokenRole.TEXT)
    else:
        mask = roles != int(TokenRole.PAD)
    return PositionMask(prompt=mask, new_tokens=positions != "image")


@dataclass(frozen=True)
class TeacherForced:
    """A prompt batch with each row's caption appended (right-padded)."""

    inputs: dict[str, Any]
    """Model keyword arguments: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``pixel_values``."""
    prompt_length: int
    """Columns of the (left-padded) prompt; caption token ``j`` is at column ``prompt_length + j``."""
    caption_ids: torch.Tensor
    """``[B, L]`` caption token ids (pad id where ``caption_mask`` is False)."""
    caption_mask: torch.Tensor
    """``[B, L]`` bool, True on real caption tokens."""


def teacher_forced(
    loaded: LoadedModel, prompt_inputs: dict[str, torch.Tensor], captions: Sequence[Sequence[int]]
) -> TeacherForced:
    """Append ``captions`` (token ids, one list per row, possibly empty) to a prompt batch.

    The logits of the returned inputs at columns ``prompt_length - 1 .. prompt_length + L - 2``
    predict the caption tokens; the forward pass needs ``logits_to_keep = L + 1``.
    """
    B, T = prompt_inputs["input_ids"].shape
    if len(captions) != B:
        raise ValueError(f"{len(captions)} captions for a batch of {B}")
    L = max(1, max(len(c) for c in captions))
    pad = int(loaded.processor.tokenizer.pad_token_id or 0)
    device = prompt_inputs["input_ids"].device
    ids = torch.full((B, L), pad, dtype=prompt_inputs["input_ids"].dtype, device=device)
    mask = torch.zeros((B, L), dtype=torch.bool, device=device)
    for b, caption in enumerate(captions):
        ids[b, : len(caption)] = torch.as_tensor(list(caption), dtype=ids.dtype)
        mask[b, : len(caption)] = True
    inputs = dict(prompt_inputs)
    inputs["input_ids"] = torch.cat([prompt_inputs["input_ids"], ids], dim=1)
    inputs["attention_mask"] = torch.cat(
        [prompt_inputs["attention_mask"], mask.to(prompt_inputs["attention_mask"].dtype)], dim=1
    )
    if "token_type_ids" in prompt_inputs:
        tt = prompt_inputs["token_type_ids"]
        inputs["token_type_ids"] = torch.cat([tt, torch.zeros((B, L), dtype=tt.dtype, device=device)], dim=1)
    return TeacherForced(inputs=inputs, prompt_length=T, caption_ids=ids, caption_mask=mask)


def caption_log_probs(loaded: LoadedModel, tf: TeacherForced) -> torch.Tensor:
    """Log-probabilities ``[B, L, V]`` (float32) of the next token at each caption position.

    Row ``b``, position ``j`` is the distribution that predicts caption token ``j`` given the prompt
    and caption tokens ``< j``. Only these positions are projected onto the vocabulary.
    """
    L = tf.caption_ids.shape[1]
    with torch.no_grad():
        out = loaded.model(**tf.inputs, logits_to_keep=L + 1, use_cache=False)
    logits = out.logits[:, :L].float()
    return torch.log_softmax(logits, dim=-1)
