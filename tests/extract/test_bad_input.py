"""Every bad input of extraction gives a clear error, and nothing is flagged that was not written."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from sae_store.errors import AlignmentError, ConfigError, ModelLoadError, SaeStoreError, StoreLockedError
from sae_store.extract import preflight
from sae_store.extract.config import ExtractConfig
from sae_store.extract.init import init_store
from sae_store.extract.run import extract_activations, run_extraction
from sae_store.models.loader import LoadedModel
from sae_store.models.tiny import build_tiny_gemma3
from sae_store.store import ActivationStore, StoreConfig, open_store
from sae_store.store import schema as S
from sae_store.store.lock import register_extraction

from .conftest import MakeStore, samples

CFG = ExtractConfig(batch_size=2, progress=False)


def _edited_model(src: Path, dest: Path, **config_changes: Any) -> Path:
    shutil.copytree(src, dest)
    config = json.loads((dest / "config.json").read_text())
    config.update(config_changes)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_model_folder_missing(make_store: MakeStore, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"does not exist or is not a folder"):
        run_extraction(make_store().path, tmp_path / "no-model", CFG)


def test_unsupported_architecture(make_store: MakeStore, tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _edited_model(tiny_model_dir, tmp_path / "llama", model_type="llama")
    with pytest.raises(ModelLoadError, match=r"Unsupported model_type 'llama'"):
        run_extraction(make_store().path, model, CFG)


def test_processor_and_model_mismatch(tiny_model_dir: Path, tmp_path: Path, images_root: Path) -> None:
    # 4 image tokens in the config while the processor inserts 16: loading refuses to pair them
    model = _edited_model(tiny_model_dir, tmp_path / "mixed", mm_tokens_per_image=4)
    store = init_store(tmp_path / "s.zarr", samples(images_root, range(4)), model)
    with pytest.raises(ModelLoadError, match=r"image_seq_length is 16 but config mm_tokens_per_image is 4"):
        run_extraction(store.path, model, CFG, device="cpu", dtype="float32")
    assert not store.read_flags().any()


def test_store_made_with_another_model_is_refused(make_store: MakeStore, tmp_path: Path) -> None:
    other = build_tiny_gemma3(tmp_path / "seed1", seed=1)
    with pytest.raises(SaeStoreError, match=r"is not the model store .* was made with .*weights_sha256"):
        run_extraction(make_store().path, other, CFG, device="cpu", dtype="float32")


def _set_attr(store: ActivationStore, key: str, value: Any) -> ActivationStore:
    zarr.open_group(str(store.path), mode="r+").update_attributes({key: value})
    return open_store(store.path)


def test_store_prompts_not_matching_the_processor(make_store: MakeStore, loaded: LoadedModel) -> None:
    store = make_store()
    prompts = {**store.attrs["prompts"], "en": "Describe every person and object you can see in this image."}
    store = _set_attr(store, "prompts", prompts)
    with pytest.raises(SaeStoreError, match=r"prompt 'en' .* now takes \d+ tokens, the store expects 44"):
        extract_activations(store, loaded, CFG)
    store = _set_attr(make_store(), "chat_template", "{{ bos_token }}")
    with pytest.raises(SaeStoreError, match=r"chat template differs"):
        extract_activations(store, loaded, CFG)
    assert not store.read_flags().any()


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (
            ExtractConfig(layers=(7,), progress=False),
            SaeStoreError,
            r"layer 7 is not in the store; it holds layers \[0, 1, 2, 3\]",
        ),
        (
            ExtractConfig(languages=("fr",), progress=False),
            SaeStoreError,
            r"language 'fr' is not in the store",
        ),
        (
            ExtractConfig(sample_range=(2, 8), progress=False),
            AlignmentError,
            r"not aligned to shard blocks of 4",
        ),
        (ExtractConfig(sample_range=(0, 12), progress=False), AlignmentError, r"outside the store's 0:10"),
    ],
)
def test_bad_selection(
    make_store: MakeStore, loaded: LoadedModel, config: ExtractConfig, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        extract_activations(make_store(), loaded, config)


def test_task_index_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"task_index must be in 0..2 for task_count 3, got 3"):
        ExtractConfig(task_index=3, task_count=3)


def test_overlapping_ranges_of_running_extractions_are_refused(
    make_store: MakeStore, loaded: LoadedModel
) -> None:
    store = make_store()
    with (
        register_extraction(store.path, [1, 2]),
        pytest.raises(StoreLockedError, match=r"shard blocks \[1\] .* are being extracted by pid"),
    ):
        extract_activations(store, loaded, ExtractConfig(sample_range=(0, 8), batch_size=2, progress=False))
    assert not store.read_flags().any()
    # disjoint blocks may run side by side
    extract_activations(store, loaded, ExtractConfig(sample_range=(0, 4), batch_size=2, progress=False))


class _DiskFullStore(ActivationStore):
    """Raises ENOSPC when array ``fail_on`` is written for samples from 4 on."""

    fail_on = S.ACTIVATIONS

    def write(self, name: str, values: np.ndarray, *, start: int, **kw: Any) -> None:
        if name == self.fail_on and start >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(name, values, start=start, **kw)

    def write_activation_shard(self, layer: int, language: str, start: int, chunks: Any) -> int:
        if self.fail_on == S.ACTIVATIONS and start >= 4 and layer == self.layout.layers[-1]:
            raise OSError(errno.ENOSPC, "No space left on device")  # the other layers' shards are written
        return super().write_activation_shard(layer, language, start, chunks)


@pytest.mark.parametrize("fail_on", [S.ACTIVATIONS, S.MAX_ABS])
def test_disk_full_during_a_write_sets_no_flag_for_that_block(
    make_store: MakeStore, loaded: LoadedModel, fail_on: str
) -> None:
    store = make_store()
    full = _DiskFullStore(path=store.path, attrs=store.attrs)
    full.fail_on = fail_on
    with pytest.raises(
        SaeStoreError,
        match=r"writing samples 4:8 of language 'en' failed: OSError: .*No space left on "
        r"device. No completion flag was set for them",
    ):
        extract_activations(full, loaded, CFG)
    flags = store.read_flags()
    assert flags[:, :, :4].all() and not flags[:, :, 4:].any()
    if fail_on == S.MAX_ABS:  # the activations of the failed block are on disk, but unflagged: not done
        assert np.isfinite(store.array(S.ACTIVATIONS)[:, 0, 4, 0]).all()
    assert not list(store.path.rglob("*.partial"))  # the failed write's temporary file is gone
    resumed = extract_activations(store, loaded, CFG)
    assert resumed.blocks_skipped == 2 and store.read_flags().all()


def test_quota_and_free_space_are_checked_before_starting(
    make_store: MakeStore, loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    with pytest.raises(
        SaeStoreError,
        match=r"and this task would add about 225,280 values x 2.00 bytes/value .* more than the quota 100 B",
    ):
        extract_activations(store, loaded, ExtractConfig(quota=100, progress=False))
    usage = shutil.disk_usage(store.path)._replace(free=1000)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: usage)
    with pytest.raises(
        SaeStoreError, match=r"450.56 KB, but only 1.00 KB are free on the store's filesystem"
    ):
        extract_activations(store, loaded, CFG)
    assert not store.read_flags().any()


def test_missing_images_folder(make_store: MakeStore, loaded: LoadedModel, tmp_path: Path) -> None:
    with pytest.raises(
        SaeStoreError, match=r"images folder .*nowhere' does not exist; pass the right one with --images"
    ):
        extract_activations(make_store(), loaded, CFG, images_dir=tmp_path / "nowhere")


def test_init_refuses_unknown_languages_and_unlocatable_images(
    tiny_model_dir: Path, tmp_path: Path, images_root: Path
) -> None:
    table = samples(images_root, range(4))
    with pytest.raises(ConfigError, match=r"unknown language key\(s\) \['fr'\]"):
        init_store(tmp_path / "a.zarr", table, tiny_model_dir, languages=["en", "fr"])
    with pytest.raises(SaeStoreError, match=r"cannot tell which folder .* pass it with --images DIR"):
        init_store(tmp_path / "b.zarr", table.assign(image_path=""), tiny_model_dir)
    store = init_store(
        tmp_path / "c.zarr",
        table,
        tiny_model_dir,
        languages=["fr"],
        prompts={"fr": "Décris la personne."},
        config=StoreConfig(samples_per_shard=2),
    )
    assert store.layout.languages == ("fr",) and store.attrs["prompts"] == {"fr": "Décris la personne."}
    assert store.attrs["images_dir"] == str(images_root)
