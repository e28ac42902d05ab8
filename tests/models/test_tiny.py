"""The tiny Gemma 3 builder: a loadable folder, deterministic weights, refused sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sae_store.errors import SaeStoreError
from sae_store.models.loader import LoadedModel, model_identity
from sae_store.models.tiny import MEDIUM, build_tiny_gemma3


def test_folder_has_the_files_of_a_hub_checkpoint(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= names
    assert {"tokenizer_config.json", "generation_config.json", "chat_template.jinja"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "gemma3"
    assert config["architectures"] == ["Gemma3ForConditionalGeneration"]
    assert config["vision_config"]["image_size"] == 32
    assert config["mm_tokens_per_image"] == 16


def test_loads_with_the_auto_classes(tiny_loaded: LoadedModel) -> None:
    model, processor = tiny_loaded.model, tiny_loaded.processor
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert type(processor).__name__ == "Gemma3Processor"
    assert processor.tokenizer.padding_side == "left"
    assert processor.image_seq_length == 16
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 500_000


def test_projector_is_not_zero(tiny_loaded: LoadedModel) -> None:
    model: Any = tiny_loaded.model
    weight = model.model.multi_modal_projector.mm_input_projection_weight
    assert weight.abs().min() > 0
    assert 0.01 < weight.std().item() < 0.04


def test_same_seed_gives_identical_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_gemma3(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name


def test_other_seed_gives_other_weights_and_identity(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_gemma3(tmp_path / "other", seed=1)
    a, b = load_file(tiny_model_dir / "model.safetensors"), load_file(other / "model.safetensors")
    assert a.keys() == b.keys()
    # Saved under the hub checkpoints' key names (language_model.model..., multi_modal_projector...).
    for key in (
        "multi_modal_projector.mm_input_projection_weight",
        "language_model.model.embed_tokens.weight",
    ):
        assert not torch.equal(a[key], b[key]), key
    id_a, id_b = model_identity(tiny_model_dir), model_identity(other)
    assert id_a["config_sha256"] == id_b["config_sha256"]
    assert id_a["weights_sha256"] != id_b["weights_sha256"]
    assert id_a != id_b


def test_build_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_gemma3(tmp_path / "m", num_layers=1, hidden_size=32)
    assert torch.equal(torch.rand(3), expected)


def test_custom_sizes(tmp_path: Path) -> None:
    out = build_tiny_gemma3(
        tmp_path / "m", num_layers=2, hidden_size=128, image_size=64, patch_size=8, mm_tokens_per_image=4
    )
    identity = model_identity(out)
    assert (identity["n_layers"], identity["hidden_size"], identity["mm_tokens_per_image"]) == (2, 128, 4)


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        (
            {"mm_tokens_per_image": 15},
            r"perfect square whose root divides the 8 patches per side .* "
            r"mm_tokens_per_image=15\. Valid values here: \[1, 4, 16, 64\]",
        ),
        ({"mm_tokens_per_image": 9}, r"mm_tokens_per_image=9\. Valid values"),
        (
            {"image_size": 30},
            r"image_size must be a multiple of patch_size, got image_size=30 and patch_size=4",
        ),
        ({"patch_size": 0}, r"must be positive"),
        ({"hidden_size": 40}, r"hidden_size must be a multiple of 16 \(the head size used for it\), got 40"),
        ({"hidden_size": 16}, r"hidden_size must be an integer >= 32, got 16"),
        ({"hidden_size": 520}, r"multiple of 64 .* got 520"),
        ({"num_layers": 0}, r"num_layers must be a positive integer, got 0"),
    ],
)
def test_bad_sizes_are_refused(tmp_path: Path, sizes: dict[str, Any], match: str) -> None:
    with pytest.raises(SaeStoreError, match=match):
        build_tiny_gemma3(tmp_path / "m", **sizes)
    assert not (tmp_path / "m").exists()


def test_non_empty_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(SaeStoreError, match=r"Output folder '.*m' is not empty\. .*overwrite=True"):
        build_tiny_gemma3(out)
    build_tiny_gemma3(out, num_layers=1, hidden_size=32, overwrite=True)
    assert (out / "config.json").is_file()


def test_medium_size_for_benchmarks(tmp_path: Path) -> None:
    out = build_tiny_gemma3(tmp_path / "medium", **MEDIUM)
    identity = model_identity(out)
    assert (identity["n_layers"], identity["hidden_size"]) == (8, 512)
    config = json.loads((out / "config.json").read_text())["text_config"]
    assert (config["num_attention_heads"], config["head_dim"], config["intermediate_size"]) == (8, 64, 1024)
