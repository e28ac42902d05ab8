"""The architecture adapter: layer lookup, registry, tuple-or-tensor layer outputs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from sae_store.errors import ModelLoadError, SaeStoreError
from sae_store.models import adapter as adapter_mod
from sae_store.models.adapter import (
    ModelAdapter,
    check_image_geometry,
    get_adapter,
    hidden_from_output,
    replace_hidden,
    supported_model_types,
)
from sae_store.models.loader import LoadedModel


def test_gemma3_facts(tiny_loaded: LoadedModel) -> None:
    a = tiny_loaded.adapter
    model: Any = tiny_loaded.model
    assert (a.model_type, a.n_layers, a.hidden_size) == ("gemma3", 4, 64)
    assert (a.mm_tokens_per_image, a.image_grid) == (16, 4)
    assert a.image_token_id == tiny_loaded.processor.tokenizer.image_token_id
    layers = a.decoder_layers(tiny_loaded.model)
    assert len(layers) == 4
    assert layers[0] is model.model.language_model.layers[0]
    assert a.final_norm(model) is model.model.language_model.norm


def test_older_module_layout_is_found() -> None:
    a = ModelAdapter(
        "gemma3", 2, 8, 9, 16, 4, layer_paths=("model.language_model.layers", "language_model.model.layers")
    )
    old = nn.Module()
    old.language_model = nn.Module()
    old.language_model.model = nn.Module()
    old.language_model.model.layers = nn.ModuleList([nn.Identity(), nn.Identity()])
    assert a.decoder_layers(old) == list(old.language_model.model.layers)


def test_missing_layers_are_reported() -> None:
    a = ModelAdapter("gemma3", 3, 8, 9, 16, 4, layer_paths=("model.layers",))
    model = nn.Module()
    model.model = nn.Module()
    model.model.layers = nn.ModuleList([nn.Identity()])
    with pytest.raises(
        ModelLoadError,
        match=r"Cannot find the 3 decoder layers of this 'gemma3' model: "
        r"tried 'model.layers' on Module",
    ):
        a.decoder_layers(model)


def test_unsupported_model_type() -> None:
    with pytest.raises(
        ModelLoadError,
        match=r"Unsupported model_type 'llava': sae-store supports "
        r"\['gemma3'\].*register_adapter",
    ):
        get_adapter(SimpleNamespace(model_type="llava"))


def test_registering_an_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapter_mod, "_ADAPTERS", dict(adapter_mod._ADAPTERS))
    made = ModelAdapter("toy", 1, 4, 5, 1, 1, layer_paths=("layers",))
    adapter_mod.register_adapter("toy", lambda config: made)
    assert supported_model_types() == ["gemma3", "toy"]
    assert get_adapter(SimpleNamespace(model_type="toy")) is made


def test_inconsistent_gemma3_config_is_refused(tiny_loaded: LoadedModel) -> None:
    config: Any = tiny_loaded.model.config
    broken = SimpleNamespace(
        model_type="gemma3",
        text_config=config.text_config,
        vision_config=config.vision_config,
        mm_tokens_per_image=9,
        image_token_id=9,
    )
    with pytest.raises(ModelLoadError, match=r"Inconsistent Gemma 3 config: mm_tokens_per_image must be"):
        get_adapter(broken)


def test_real_gemma3_4b_geometry() -> None:
    assert check_image_geometry(896, 14, 256) == 16
    with pytest.raises(SaeStoreError, match=r"Valid values here: \[1, 4, 16, 64, 256, 1024, 4096\]"):
        check_image_geometry(896, 14, 255)


def test_tensor_and_tuple_outputs() -> None:
    h = torch.ones(1, 2, 3)
    new = torch.zeros(1, 2, 3)
    assert hidden_from_output(h) is h
    assert hidden_from_output((h, None)) is h
    assert replace_hidden(h, new) is new
    replaced = replace_hidden((h, "attn"), new)
    assert isinstance(replaced, tuple)
    assert replaced[0] is new and replaced[1] == "attn"
    with pytest.raises(TypeError, match="Unexpected decoder layer output of type dict"):
        hidden_from_output({"h": h})
