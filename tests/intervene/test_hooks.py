"""Edits inside the live tiny model: identity, the error-preserving formula, non-linearity, generation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from PIL import Image

from sae_store.errors import ConfigError, SaeStoreError
from sae_store.intervene.batches import position_mask, prompt_batch
from sae_store.intervene.captions import generate_captions
from sae_store.intervene.config import CaptionConfig
from sae_store.intervene.hooks import (
    FeatureEdit,
    HookRecord,
    PositionMask,
    check_sae,
    edit_layer,
    edit_residual,
    layer_hook,
)
from sae_store.models.loader import LoadedModel
from tests.intervene.conftest import EN_PROMPT, ToySAE

LAYER = 1


def _module(tiny: LoadedModel, layer: int = LAYER) -> torch.nn.Module:
    return tiny.adapter.decoder_layers(tiny.model)[layer]


def _logits(tiny: LoadedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return tiny.model(**inputs).logits


def _capture(tiny: LoadedModel, inputs: dict[str, torch.Tensor], layer: int = LAYER) -> torch.Tensor:
    # A plain (appended) hook sees the layer output after any prepended edit.
    seen: list[torch.Tensor] = []
    handle = _module(tiny, layer).register_forward_hook(lambda _m, _a, out: seen.append(out.detach().clone()))
    try:
        _logits(tiny, inputs)
    finally:
        handle.remove()
    return seen[0]


def _n_hooks(tiny: LoadedModel) -> int:
    return sum(len(m._forward_hooks) for m in tiny.model.modules())


@pytest.fixture
def inputs(tiny: LoadedModel, images: list[Image.Image]) -> dict[str, torch.Tensor]:
    return prompt_batch(tiny, images, EN_PROMPT)


@pytest.mark.parametrize(
    "edit",
    [FeatureEdit("ablate", ()), FeatureEdit("amplify", (1, 5, 9, 200), alpha=1.0)],
    ids=["empty-F", "alpha-1"],
)
def test_identity_edits_leave_logits_bit_identical_and_remove_hooks(
    tiny: LoadedModel, toy_sae: ToySAE, inputs: dict[str, torch.Tensor], edit: FeatureEdit
) -> None:
    before, n_hooks = _logits(tiny, inputs), _n_hooks(tiny)
    with edit_layer(_module(tiny), toy_sae, edit, position_mask(tiny, inputs, "all")) as record:
        assert _n_hooks(tiny) == n_hooks + 1
        during = _logits(tiny, inputs)
    assert torch.equal(during, before)
    assert record.shapes == [(*inputs["input_ids"].shape, tiny.adapter.hidden_size)]
    assert _n_hooks(tiny) == n_hooks


def test_hooks_are_removed_after_an_exception(
    tiny: LoadedModel, toy_sae: ToySAE, inputs: dict[str, torch.Tensor]
) -> None:
    before, n_hooks = _logits(tiny, inputs), _n_hooks(tiny)
    with (
        pytest.raises(RuntimeError, match="boom"),
        edit_layer(_module(tiny), toy_sae, FeatureEdit("ablate", (1, 2))),
    ):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="inside the hook"), layer_hook(_module(tiny), _explode):
        _logits(tiny, inputs)
    assert _n_hooks(tiny) == n_hooks
    assert torch.equal(_logits(tiny, inputs), before)


def _explode(_hidden: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("inside the hook")


def test_ablating_every_feature_leaves_error_plus_b_dec(
    tiny: LoadedModel, toy_sae: ToySAE, inputs: dict[str, torch.Tensor]
) -> None:
    x = _capture(tiny, inputs)
    error = x - toy_sae.decode(toy_sae.encode(x))
    edit = FeatureEdit("ablate", tuple(range(toy_sae.d_sae)))
    with edit_layer(_module(tiny), toy_sae, edit):
        edited = _capture(tiny, inputs)
    torch.testing.assert_close(edited, error + toy_sae.b_dec, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(edited, x, atol=1e-2)  # the edit did change the stream


def test_edit_formulas_on_vectors(toy_sae: ToySAE) -> None:
    x = torch.randn(3, 7, toy_sae.d_in) * 3
    f = toy_sae.encode(x)
    F = (0, 4, 17, 30)
    d = toy_sae.W_dec[list(F)]
    contribution = f[..., list(F)] @ d
    torch.testing.assert_close(edit_residual(x, toy_sae, FeatureEdit("ablate", F)), x - contribution)
    torch.testing.assert_close(
        edit_residual(x, toy_sae, FeatureEdit("amplify", F, alpha=3.0)), x + 2 * contribution
    )
    targets = (0.5, 0.0, 1.5, 2.0)
    expected = x + (torch.tensor(targets) - f[..., list(F)]) @ d
    torch.testing.assert_close(
        edit_residual(x, toy_sae, FeatureEdit("neutralise", F, targets=targets)), expected
    )
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, 2:5] = True
    masked = edit_residual(x, toy_sae, FeatureEdit("ablate", F), mask)
    assert torch.equal(masked[~mask], x[~mask])
    torch.testing.assert_close(masked[mask], (x - contribution)[mask])


def test_amplification_acts_through_the_model_not_linearly(
    tiny: LoadedModel, toy_sae: ToySAE, inputs: dict[str, torch.Tensor]
) -> None:
    x = _capture(tiny, inputs)
    strongest = tuple(int(i) for i in toy_sae.encode(x).mean(dim=(0, 1)).topk(8).indices)
    base = _logits(tiny, inputs)
    layer_delta, logit_delta = {}, {}
    for alpha in (2.0, 3.0):
        with edit_layer(_module(tiny), toy_sae, FeatureEdit("amplify", strongest, alpha=alpha)):
            layer_delta[alpha] = _capture(tiny, inputs) - x
            logit_delta[alpha] = _logits(tiny, inputs) - base
    # at the edited layer the change is (alpha - 1) * sum f_i d_i: exactly linear ...
    torch.testing.assert_close(layer_delta[3.0], 2 * layer_delta[2.0], atol=1e-4, rtol=1e-4)
    # ... but what reaches the logits went through the later layers, norms and attention
    deviation = (logit_delta[3.0] - 2 * logit_delta[2.0]).norm() / logit_delta[3.0].norm()
    assert logit_delta[2.0].abs().max() > 1e-3
    assert deviation > 1e-2


def test_image_positions_edit_only_image_tokens(
    tiny: LoadedModel, toy_sae: ToySAE, inputs: dict[str, torch.Tensor]
) -> None:
    mask = position_mask(tiny, inputs, "image")
    assert torch.equal(mask.prompt, inputs["token_type_ids"] == 1)
    assert not mask.new_tokens
    text = position_mask(tiny, inputs, "text").prompt
    assert not (text & mask.prompt).any() and not text[inputs["attention_mask"] == 0].any()
    assert torch.equal(position_mask(tiny, inputs, "all").prompt, inputs["attention_mask"] == 1)
    x = _capture(tiny, inputs)
    with edit_layer(_module(tiny), toy_sae, FeatureEdit("ablate", tuple(range(64))), mask):
        edited = _capture(tiny, inputs)
    assert torch.equal(edited[~mask.prompt], x[~mask.prompt])
    assert not torch.allclose(edited[mask.prompt], x[mask.prompt])


def test_generation_edits_the_prefill_and_every_decode_step(
    tiny: LoadedModel, toy_sae: ToySAE, images: list[Image.Image]
) -> None:
    records: list[HookRecord] = []
    masks: list[torch.Tensor] = []
    edit = FeatureEdit("ablate", tuple(range(toy_sae.d_sae)), positions="text")

    @contextmanager
    def factory(inputs: dict[str, Any]) -> Iterator[None]:
        mask = position_mask(tiny, inputs, edit.positions)

        def spy(hidden: torch.Tensor) -> torch.Tensor:
            masks.append(mask.for_hidden(hidden))
            return edit_residual(hidden, toy_sae, edit, masks[-1])

        with layer_hook(_module(tiny), spy) as record:
            records.append(record)
            yield

    n_hooks = _n_hooks(tiny)
    config = CaptionConfig(max_new_tokens=5, batch_size=4)
    edited = generate_captions(tiny, images, EN_PROMPT, "en", config=config, edit=factory)
    plain = generate_captions(tiny, images, EN_PROMPT, "en", config=config)
    assert _n_hooks(tiny) == n_hooks
    (record,) = records
    B, d = len(images), tiny.adapter.hidden_size
    assert record.shapes[0][0] == B and record.shapes[0][2] == d and record.shapes[0][1] > 1
    assert record.shapes[1:] == [(B, 1, d)] * (len(record.shapes) - 1)
    assert all(len(c.token_ids) == 5 for c in edited)  # none stopped early: the prefill and 4 decode steps
    assert len(record.shapes) == 5
    assert all(m.all() for m in masks[1:])  # generated tokens are text: edited at each step
    assert [c.token_ids for c in edited] != [c.token_ids for c in plain]


def test_position_mask_shapes() -> None:
    prompt = torch.tensor([[False, True, True], [True, True, False]])
    mask = PositionMask(prompt, new_tokens=False)
    assert torch.equal(mask.for_hidden(torch.zeros(2, 3, 4)), prompt)
    assert torch.equal(mask.for_hidden(torch.zeros(2, 1, 4)), torch.zeros(2, 1, dtype=torch.bool))
    grown = PositionMask(prompt, new_tokens=True).for_hidden(torch.zeros(2, 5, 4))
    assert torch.equal(grown, torch.cat([prompt, torch.ones(2, 2, dtype=torch.bool)], dim=1))
    with pytest.raises(SaeStoreError, match="saw 2 positions; the mask was built for 3"):
        mask.for_hidden(torch.zeros(2, 2, 4))
    with pytest.raises(SaeStoreError, match="batch of 3 rows, the mask was built for 2"):
        mask.for_hidden(torch.zeros(3, 3, 4))


def test_bad_saes_and_edits_are_refused(toy_sae: ToySAE) -> None:
    with pytest.raises(
        SaeStoreError, match=r"feature indices \[256, 300\] are out of range: the SAE has d_sae=256"
    ):
        check_sae(toy_sae, layer=LAYER, d_in=64, edit=FeatureEdit("ablate", (3, 256, 300)))
    with pytest.raises(SaeStoreError, match="the SAE was trained on layer 1, not layer 2"):
        check_sae(toy_sae, layer=2, d_in=64)
    with pytest.raises(SaeStoreError, match="the SAE was trained on layer 3, not layer 1"):
        check_sae(toy_sae, layer=LAYER, d_in=64, sae_layer=3)
    with pytest.raises(SaeStoreError, match="d_in=64, but the model's residual stream has width 32"):
        check_sae(toy_sae, layer=LAYER, d_in=32)
    for alpha in (0.0, -1.0):
        with pytest.raises(ConfigError, match=rf"alpha must be > 0 for mode 'amplify', got {alpha}"):
            FeatureEdit("amplify", (1,), alpha=alpha)
    with pytest.raises(ConfigError, match="one target value per feature: 2 features, None targets"):
        FeatureEdit("neutralise", (1, 2))
    with pytest.raises(ConfigError, match="features must be distinct"):
        FeatureEdit("ablate", (1, 1))
    with pytest.raises(ConfigError, match="features must be non-negative integers"):
        FeatureEdit("ablate", (-1,))
    with pytest.raises(ConfigError, match="mode must be one of"):
        FeatureEdit("erase", (1,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positions must be one of"):
        FeatureEdit("ablate", (1,), positions="caption")  # type: ignore[arg-type]
