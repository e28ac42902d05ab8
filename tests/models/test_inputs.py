"""Batches, token roles, left alignment, and what hooks see in a forward pass."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sae_store.errors import DataError
from sae_store.models.adapter import hidden_from_output
from sae_store.models.inputs import build_batch, left_align, sequence_length, special_token_ids, token_roles
from sae_store.models.loader import LoadedModel
from sae_store.roles import TokenRole

from .conftest import AR_PROMPT, EN_PROMPT


def _roles(loaded: LoadedModel, batch: Any) -> torch.Tensor:
    return token_roles(
        batch["input_ids"],
        batch["attention_mask"],
        batch["token_type_ids"],
        special_token_ids(loaded.processor.tokenizer),
        image_token_id=loaded.adapter.image_token_id,
    )


def _capture(loaded: LoadedModel, batch: Any) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    captured: list[torch.Tensor] = []
    layers = loaded.adapter.decoder_layers(loaded.model)
    handles = [
        layer.register_forward_hook(lambda m, i, o: captured.append(hidden_from_output(o).detach()))
        for layer in layers
    ]
    try:
        with torch.no_grad():
            out = loaded.model(**batch, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return captured, out.hidden_states


@pytest.mark.parametrize("prompt", [EN_PROMPT, AR_PROMPT], ids=["en", "ar"])
def test_forward_pass(tiny_loaded: LoadedModel, images: list[Image.Image], prompt: str) -> None:
    batch = build_batch(tiny_loaded.processor, images, prompt)
    assert set(batch) >= {"input_ids", "attention_mask", "pixel_values", "token_type_ids"}
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        logits = tiny_loaded.model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape
    assert torch.isfinite(logits).all()
    text = tiny_loaded.processor.tokenizer.decode(batch["input_ids"][0])
    assert text.startswith("<bos><start_of_turn>user\n")
    assert text.endswith(f"{prompt}<end_of_turn>\n<start_of_turn>model\n")


@pytest.mark.parametrize(
    "text",
    [AR_PROMPT, "امرأة شابة تبتسم للكاميرا.", "كلمات جديدة لم يرها المُرمّز ١٢٣", "naïve café 🙂", EN_PROMPT],
)
def test_text_round_trips_through_the_tokenizer(tiny_loaded: LoadedModel, text: str) -> None:
    tokenizer = tiny_loaded.processor.tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_arabic_words_are_learned_pieces(tiny_loaded: LoadedModel) -> None:
    tokens = tiny_loaded.processor.tokenizer.tokenize(AR_PROMPT)
    assert tokens[:3] == ["صف", "▁الشخص", "▁في"]


def test_token_roles(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    batch = build_batch(tiny_loaded.processor, images, AR_PROMPT)
    roles = _roles(tiny_loaded, batch)
    assert roles.dtype == torch.int8
    assert roles.shape == batch["input_ids"].shape
    assert ((roles == TokenRole.IMAGE).sum(dim=1) == 16).all()
    assert ((roles == TokenRole.PAD).sum(dim=1) == (batch["attention_mask"] == 0).sum(dim=1)).all()
    # bos, <start_of_turn> x2, <end_of_turn>, <start_of_image>, <end_of_image>
    assert ((roles == TokenRole.SPECIAL).sum(dim=1) == 6).all()
    assert ((roles == TokenRole.TEXT).sum(dim=1) > 6).all()


def test_token_roles_with_padding() -> None:
    ids = torch.tensor([[0, 0, 2, 7, 9, 9, 8, 50], [2, 7, 9, 9, 8, 50, 51, 52]])
    mask = (torch.arange(8) >= torch.tensor([[2], [0]])).long()
    types = (ids == 9).long()
    roles = token_roles(ids, mask, types, {0, 2, 7, 8, 9})
    P, S, T, I = TokenRole.PAD, TokenRole.SPECIAL, TokenRole.TEXT, TokenRole.IMAGE  # noqa: E741
    assert roles.tolist() == [[P, P, S, S, I, I, S, T], [S, S, I, I, S, T, T, T]]
    no_types = token_roles(ids, mask, None, {0, 2, 7, 8}, image_token_id=9)
    assert torch.equal(no_types, roles)


def test_left_align() -> None:
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1]])
    ids = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4], [0, 7, 0, 8]])
    assert left_align(ids, mask).tolist() == [[5, 6, 0, 0], [1, 2, 3, 4], [7, 8, 0, 0]]
    assert left_align(mask, mask).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
    hidden = ids[..., None].float() * torch.tensor([1.0, -1.0])
    aligned = left_align(hidden, mask)
    assert aligned.shape == (3, 4, 2)
    assert aligned[0, :2].tolist() == [[5.0, -5.0], [6.0, -6.0]]
    with pytest.raises(ValueError, match=r"do not match attention_mask"):
        left_align(ids[:, :3], mask)


def test_sequence_length(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    for prompt in (EN_PROMPT, AR_PROMPT):
        n = sequence_length(tiny_loaded.processor, prompt)
        batch = build_batch(tiny_loaded.processor, images, prompt)
        assert batch["input_ids"].shape[1] == n
        assert (batch["attention_mask"].sum(dim=1) == n).all()
    assert sequence_length(tiny_loaded.processor, EN_PROMPT) != sequence_length(
        tiny_loaded.processor, AR_PROMPT
    )


def test_bad_batches(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    with pytest.raises(DataError, match="at least one image"):
        build_batch(tiny_loaded.processor, [], EN_PROMPT)
    with pytest.raises(DataError, match="The prompt is empty"):
        build_batch(tiny_loaded.processor, images, "  ")


def test_hooks_see_the_hidden_states(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    batch = build_batch(tiny_loaded.processor, images, EN_PROMPT)
    captured, hidden_states = _capture(tiny_loaded, batch)
    n = tiny_loaded.adapter.n_layers
    assert len(captured) == n and len(hidden_states) == n + 1
    for i in range(n - 1):
        assert torch.equal(captured[i], hidden_states[i + 1]), i
    # The last entry of hidden_states is after the final norm; the hook sees the raw residual stream.
    assert not torch.allclose(captured[-1], hidden_states[-1])
    norm = tiny_loaded.adapter.final_norm(tiny_loaded.model)
    with torch.no_grad():
        torch.testing.assert_close(norm(captured[-1]), hidden_states[-1])


def test_batched_equals_alone(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    batched, _ = _capture(tiny_loaded, build_batch(tiny_loaded.processor, images, AR_PROMPT))
    for b, image in enumerate(images):
        alone, _ = _capture(tiny_loaded, build_batch(tiny_loaded.processor, [image], AR_PROMPT))
        for layer in range(len(alone)):
            assert (batched[layer][b] - alone[layer][0]).abs().max() < 1e-5


def _left_padded(batches: list[Any], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch of single-sample ``batches`` whose prompts differ in length: each row padded on the left
    to the longest (``pad_id``, attention 0, no image token), as a processor padding on the left does."""
    width = max(b["input_ids"].shape[1] for b in batches)

    def stacked(name: str, pad: int) -> torch.Tensor:
        return torch.cat([F.pad(b[name], (width - b[name].shape[1], 0), value=pad) for b in batches])

    return {
        "input_ids": stacked("input_ids", pad_id),
        "attention_mask": stacked("attention_mask", 0),
        "token_type_ids": stacked("token_type_ids", 0),
        "pixel_values": torch.cat([b["pixel_values"] for b in batches]),
    }


def test_left_padded_batch_equals_alone(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    # Prompts of different lengths in one batch force left padding; after left_align, each sample's
    # real tokens must match a run on its own.
    processor = tiny_loaded.processor
    prompts = (EN_PROMPT, AR_PROMPT + " " + AR_PROMPT)
    singles = [build_batch(processor, [image], prompt) for image, prompt in zip(images, prompts, strict=True)]
    batch = _left_padded(singles, processor.tokenizer.pad_token_id)
    mask = batch["attention_mask"]
    assert (mask == 0).any()
    padded, _ = _capture(tiny_loaded, batch)
    for b, single in enumerate(singles):
        alone, _ = _capture(tiny_loaded, single)
        n = alone[0].shape[1]
        for layer in range(len(alone)):
            aligned = left_align(padded[layer], mask)[b, :n]
            assert (aligned - alone[layer][0]).abs().max() < 1e-5


def test_the_image_changes_the_text_positions(tiny_loaded: LoadedModel, images: list[Image.Image]) -> None:
    captured, _ = _capture(tiny_loaded, build_batch(tiny_loaded.processor, images, EN_PROMPT))
    last = captured[-1][:, -1]
    assert (last[0] - last[1]).abs().max() > 1e-3
