"""Loading a model folder: checks, identity, device and dtype, consistency."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sae_store.device import resolve_device
from sae_store.errors import ModelLoadError, SaeStoreError
from sae_store.models.loader import (
    LoadedModel,
    check_model_dir,
    load_model,
    load_processor,
    model_identity,
    resolve_dtype,
)


def _copy(src: Path, dst: Path, *, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop))
    return dst


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_load_model(tiny_loaded: LoadedModel, tiny_model_dir: Path) -> None:
    assert not tiny_loaded.model.training
    assert tiny_loaded.device == torch.device("cpu")
    assert tiny_loaded.dtype == torch.float32
    assert next(tiny_loaded.model.parameters()).dtype == torch.float32
    assert tiny_loaded.identity == model_identity(tiny_model_dir)
    assert type(load_processor(tiny_model_dir)).__name__ == "Gemma3Processor"


def test_identity_fields(tiny_model_dir: Path) -> None:
    identity = model_identity(tiny_model_dir)
    assert identity["name_or_path"] == str(tiny_model_dir.resolve())
    assert identity["model_type"] == "gemma3"
    assert identity["architecture"] == "Gemma3ForConditionalGeneration"
    assert (identity["n_layers"], identity["hidden_size"], identity["mm_tokens_per_image"]) == (4, 64, 16)
    assert identity["image_token_id"] == 9
    assert identity["vocab_size"] > 256
    assert len(identity["config_sha256"]) == len(identity["weights_sha256"]) == 64


def test_identity_does_not_depend_on_the_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = model_identity(_copy(tiny_model_dir, tmp_path / "copy"))
    original = model_identity(tiny_model_dir)
    assert copy.pop("name_or_path") != original.pop("name_or_path")
    assert copy == original


def test_identity_hashes_the_index_and_every_shard(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "sharded")
    before = model_identity(folder)["weights_sha256"]
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    with_index = model_identity(folder)["weights_sha256"]
    assert with_index != before
    save_file({"extra": torch.zeros(3)}, str(folder / "model-extra.safetensors"))
    assert model_identity(folder)["weights_sha256"] != with_index
    (folder / "model-extra.safetensors").write_bytes(b"\0" * 10)  # not a whole safetensors file
    with pytest.raises(
        ModelLoadError,
        match=r"model-extra.safetensors' is damaged or incomplete: it has an unreadable header",
    ):
        model_identity(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(
        ModelLoadError,
        match=r"Model folder '.*nope' does not exist or is not a folder\. "
        r".*hf download google/gemma-3-4b-it",
    ):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize(
    ("drop", "match"),
    [
        (("config.json",), r"missing config\.json\. Download the complete model folder"),
        (("processor_config.json",), r"missing processor_config\.json or preprocessor_config\.json\."),
        (("tokenizer.json",), r"missing tokenizer\.json or tokenizer\.model\."),
        (("tokenizer_config.json",), r"missing tokenizer_config\.json\."),
        (("*.safetensors",), r"missing weights \(\*\.safetensors or pytorch_model\*\.bin\)"),
        (("config.json", "tokenizer.json"), r"missing config\.json, tokenizer\.json or tokenizer\.model\."),
    ],
)
def test_incomplete_folder(tiny_model_dir: Path, tmp_path: Path, drop: tuple[str, ...], match: str) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m", drop=drop)
    with pytest.raises(ModelLoadError, match=r"Model folder '.*m' is incomplete: " + match):
        check_model_dir(folder)
    with pytest.raises(ModelLoadError, match=match):
        load_model(folder)


def test_unsupported_model_type(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    _edit_json(folder / "config.json", model_type="qwen2_vl")
    with pytest.raises(
        ModelLoadError, match=r"Unsupported model_type 'qwen2_vl': sae-store supports \['gemma3'\]"
    ):
        load_model(folder)
    with pytest.raises(ModelLoadError, match=r"Unsupported model_type 'qwen2_vl'"):
        model_identity(folder)


def test_processor_and_model_mismatch(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    _edit_json(folder / "processor_config.json", image_seq_length=64)
    with pytest.raises(
        ModelLoadError,
        match=r"do not match: processor image_seq_length is 64 but config "
        r"mm_tokens_per_image is 16\. The folder mixes",
    ):
        load_model(folder, device="cpu")


@pytest.mark.parametrize("dtype", ["float16", "fp16", "half"])
def test_float16_is_refused_for_gemma3(tiny_model_dir: Path, dtype: str) -> None:
    match = (
        rf"dtype '{dtype}' is refused for Gemma 3: .*overflow float16 \(max 65504\).*'bfloat16'.*'float32'"
    )
    with pytest.raises(SaeStoreError, match=match):
        resolve_dtype(dtype, torch.device("cpu"), "gemma3")
    with pytest.raises(SaeStoreError, match=match):
        load_model(tiny_model_dir, device="cpu", dtype=dtype)


def test_resolve_dtype() -> None:
    assert resolve_dtype("auto", torch.device("cpu"), "gemma3") == torch.float32
    assert resolve_dtype("auto", torch.device("cuda"), "gemma3") == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cpu"), "gemma3") == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu"), "llava") == torch.float16
    with pytest.raises(SaeStoreError, match=r"Invalid dtype 'int8': use one of \['auto', 'float32'"):
        resolve_dtype("int8", torch.device("cpu"), "gemma3")


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(SaeStoreError, match=r"Device 'cuda:0' requested but CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(SaeStoreError, match=r"Invalid device 'gpu': use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu")


def test_bfloat16_load(tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
