"""Model inputs: chat-template batches of images and one prompt, token roles, left alignment.

A batch is left-padded (as Gemma generates); :func:`left_align` moves each row's real tokens to
position 0 so that the store holds token ``t`` of a sample at index ``t`` whatever the batch was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from PIL import Image

from sae_store.errors import DataError
from sae_store.roles import TokenRole

__all__ = ["build_batch", "left_align", "sequence_length", "special_token_ids", "token_roles"]

_REQUIRED_KEYS = ("input_ids", "attention_mask", "pixel_values", "token_type_ids")


def build_batch(processor: Any, images: Sequence[Image.Image], prompt: str) -> Any:
    """Build a left-padded batch: one user turn per image with the image, then ``prompt``.

    Parameters
    ----------
    processor
        The model's processor (``Gemma3Processor``), with its chat template.
    images : sequence of PIL.Image.Image
        One image per sample (converted to RGB by the processor).
    prompt : str
        The instruction, the same for every sample (one prompt per language).

    Returns
    -------
    transformers.BatchFeature
        ``input_ids``, ``attention_mask``, ``token_type_ids`` (1 on image tokens), all ``[B, T]``,
        and ``pixel_values`` ``[B, 3, H, W]``; the generation prompt (``<start_of_turn>model``) is
        appended.

    Raises
    ------
    DataError
        If ``images`` is empty or ``prompt`` is blank.
    """
    if not images:
        raise DataError("build_batch needs at least one image, got an empty list.")
    if not prompt.strip():
        raise DataError("The prompt is empty; pass the instruction text, e.g. 'Describe the person ...'.")
    conversations = [
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}],
            }
        ]
        for image in images
    ]
    batch = processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    )
    missing = [k for k in _REQUIRED_KEYS if k not in batch]
    if missing:
        raise DataError(f"The processor did not return {missing}; got {sorted(batch)}.")
    return batch


def special_token_ids(tokenizer: Any) -> frozenset[int]:
    """Return the ids of all special tokens: bos, eos, pad, turn and image markers.

    ``all_special_ids`` misses added special tokens such as ``<start_of_turn>``, so the tokenizer's
    added tokens flagged special are included too.
    """
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in tokenizer.added_tokens_decoder.items() if getattr(tok, "special", False))
    return frozenset(int(i) for i in ids)


def token_roles(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    special_ids: Iterable[int],
    *,
    image_token_id: int | None = None,
) -> torch.Tensor:
    """Classify every position as PAD, IMAGE, SPECIAL or TEXT (:class:`TokenRole` codes).

    PAD where ``attention_mask`` is 0; IMAGE where ``token_type_ids`` is 1 or the id is
    ``image_token_id``; SPECIAL for ``special_ids`` (bos, turn and image markers); TEXT otherwise.
    Earlier rules win.

    Returns
    -------
    torch.Tensor
        int8, the shape of ``input_ids``.
    """
    roles = torch.full(input_ids.shape, int(TokenRole.TEXT), dtype=torch.int8, device=input_ids.device)
    specials = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    roles[torch.isin(input_ids, specials)] = int(TokenRole.SPECIAL)
    is_image = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    if token_type_ids is not None:
        is_image |= token_type_ids == 1
    if image_token_id is not None:
        is_image |= input_ids == image_token_id
    roles[is_image] = int(TokenRole.IMAGE)
    roles[attention_mask == 0] = int(TokenRole.PAD)
    return roles


def left_align(tensor: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Move each row's real tokens (``attention_mask`` 1) to the front, keeping their order.

    Parameters
    ----------
    tensor : torch.Tensor
        ``[B, T, ...]``, e.g. input ids ``[B, T]`` or hidden states ``[B, T, d]``.
    attention_mask : torch.Tensor
        ``[B, T]``; 0 marks padding, wherever it is.

    Returns
    -------
    torch.Tensor
        Same shape; row ``b`` holds its real tokens at ``0 .. n_b - 1`` and its padding after.
    """
    if tensor.shape[:2] != attention_mask.shape:
        raise ValueError(
            f"tensor leading dims {tuple(tensor.shape[:2])} do not match attention_mask "
            f"{tuple(attention_mask.shape)}"
        )
    # A stable sort of "is padding" puts real tokens first without reordering them.
    order = torch.sort((attention_mask == 0).to(torch.int8), dim=1, stable=True).indices
    index = order.reshape(*order.shape, *([1] * (tensor.dim() - 2))).expand_as(tensor)
    return torch.gather(tensor, 1, index.to(tensor.device))


def sequence_length(processor: Any, prompt: str) -> int:
    """Return the number of tokens one sample with ``prompt`` takes (image tokens included).

    Exact for every image: each image gives the same number of image tokens, and the prompt is
    fixed per language.
    """
    size = getattr(processor.image_processor, "size", None)
    height = size.get("height") if isinstance(size, dict) else getattr(size, "height", None)
    side = int(height or 32)
    blank = Image.new("RGB", (side, side))
    return int(build_batch(processor, [blank], prompt)["input_ids"].shape[1])
