"""The store's ``generation`` group: contents, resume, refusal, growth after an append."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sae_store.data.gender import count_gender_terms
from sae_store.errors import IncompleteError, SaeStoreError
from sae_store.extract.append import append_samples
from sae_store.intervene.captions import generate_captions
from sae_store.intervene.config import CaptionConfig
from sae_store.intervene.generation import caption_store, experiment_samples, read_generation, store_images
from sae_store.models.loader import LoadedModel
from sae_store.store import open_store

CONFIG = CaptionConfig(max_new_tokens=6, batch_size=4)


def test_generation_group_holds_captions_and_counts(captioned_store: Path, tiny: LoadedModel) -> None:
    ds = xr.open_zarr(captioned_store, group="generation")  # what a user types
    assert dict(ds.sizes) == {"language": 2, "sample": 8, "new_token": 6}
    assert ds["gender"].dims == ("sample",) and "gender" in ds["generated_caption"].coords
    assert bool(ds["complete"].all())
    store = open_store(captioned_store)
    for j, lang in enumerate(store.layout.languages):
        captions = ds["generated_caption"].values[j]
        for i, text in enumerate(captions):
            counts = count_gender_terms(str(text), lang)  # type: ignore[arg-type]
            assert (ds["male_terms"].values[j, i], ds["female_terms"].values[j, i]) == counts
        direct = generate_captions(
            tiny, store_images(store)[0:4], store.attrs["prompts"][lang], lang, config=CONFIG
        )
        for i, cap in enumerate(direct):
            n = int(ds["n_generated"].values[j, i])
            assert tuple(ds["generated_ids"].values[j, i, :n]) == cap.token_ids
            assert np.all(ds["generated_ids"].values[j, i, n:] == -1)
            assert captions[i] == cap.text


def test_caption_resumes_missing_blocks(store_copy: Path, tiny: LoadedModel) -> None:
    store = open_store(store_copy)
    before = read_generation(store)
    store.write("complete", np.zeros(4, dtype=bool), start=4, language="ar", group="generation")
    store.write(
        "generated_caption", np.array([""] * 4, dtype=object), start=4, language="ar", group="generation"
    )
    with pytest.raises(IncompleteError, match=r"4 \(language, sample\) captions are missing"):
        read_generation(store)
    summary = caption_store(store, tiny, CONFIG, progress=False)
    assert (summary.generated, summary.skipped) == (4, 12)
    after = read_generation(store)
    assert np.array_equal(after["generated_caption"].values, before["generated_caption"].values)
    assert caption_store(store, tiny, CONFIG, progress=False).generated == 0


def test_caption_refuses_another_length_unless_overwritten(store_copy: Path, tiny: LoadedModel) -> None:
    store = open_store(store_copy)
    longer = CaptionConfig(max_new_tokens=8, batch_size=4)
    with pytest.raises(SaeStoreError, match="generated with max_new_tokens=6; this run asks for 8"):
        caption_store(store, tiny, longer, progress=False)
    assert caption_store(store, tiny, longer, overwrite=True, progress=False).generated == 16
    assert read_generation(store).sizes["new_token"] == 8


def test_caption_extends_after_an_append(store_copy: Path, tiny: LoadedModel) -> None:
    store = open_store(store_copy)
    ds = read_generation(store)
    images = store_images(store)
    new = pd.DataFrame(
        {
            "sample_id": ["extra_a", "extra_b"],
            "image": [images.paths[0].name, images.paths[1].name],
            "image_path": [str(images.paths[0]), str(images.paths[1])],
            "gender": ["male", "female"],
            "en_caption": ["A man.", "A woman."],
            "ar_caption": ["رجل.", "امرأة."],
        }
    )
    append_samples(store_copy, new)
    store = open_store(store_copy)
    summary = caption_store(store, tiny, CONFIG, progress=False)
    assert summary.generated == 4  # the two new samples in both languages
    grown = read_generation(store)
    assert grown.sizes["sample"] == 10 and list(grown["sample"].values[-2:]) == ["extra_a", "extra_b"]
    assert list(grown["gender"].values[-2:]) == ["male", "female"]
    # the new samples show the same images as samples 0 and 1, so greedy captions agree
    assert np.array_equal(grown["generated_ids"].values[:, 8:], ds["generated_ids"].values[:, :2])


def test_experiment_samples_balance_genders(captioned_store: Path) -> None:
    store = open_store(captioned_store)
    index, samples = experiment_samples(store, ["en", "ar"], max_samples=4)
    genders = read_generation(store)["gender"].values
    assert sorted(genders[index].tolist()) == ["female", "female", "male", "male"]
    assert [s.language for s in samples] == ["en", "ar"] and len(samples[0].images) == 4
    full, _ = experiment_samples(store, ["en"])
    assert full.tolist() == list(range(8))
