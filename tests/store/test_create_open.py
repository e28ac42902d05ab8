from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from sae_store.errors import AlignmentError, SaeStoreError, SchemaVersionError, StoreNotFoundError
from sae_store.store import SCHEMA_VERSION, StoreConfig, create_store, open_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16
from tests.conftest import model_info, samples_table


def roundtrip(store, values, *, start, layer, language):
    """Write one block, reopen from disk, return what comes back."""
    store.write(S.ACTIVATIONS, values, start=start, layer=layer, language=language)
    ds = open_store(store.path).dataset()
    return (
        ds.activations.sel(layer=layer, language=language)
        .isel(sample=slice(start, start + len(values)))
        .values
    )


def test_plain_open_zarr_sees_labelled_dataset(make_store):
    store = make_store(10, samples_per_shard=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated metadata present: no fallback warning
        ds = xr.open_zarr(store.path)
    assert ds.activations.dims == (S.LAYER, S.LANGUAGE, S.SAMPLE, S.TOKEN, S.HIDDEN)
    assert ds.activations.shape == (4, 2, 10, 14, 16)
    assert list(ds.language.values) == ["en", "ar"]
    assert list(ds.layer.values) == [0, 1, 2, 3]
    assert ds.sample.values[3] == "s0003"
    assert ds.gender.values[1] == "female" and "gender" in ds.activations.coords
    assert ds.caption.sel(language="ar").values[0] == "رجل في الحديقة."
    assert ds.token_role.attrs["flag_meanings"] == "pad_token special_token text_token image_token"
    assert list(ds.token_role.attrs["flag_values"]) == [0, 1, 2, 3]
    assert json.loads(ds.attrs["sae_store"])["schema_version"] == SCHEMA_VERSION
    # nothing written yet: activations are NaN and no flag is set
    assert np.isnan(ds.activations.isel(layer=0, language=0, sample=0).values).all()
    assert not ds.complete.values.any()


def test_encoding_chunks_and_shards(make_store):
    store = make_store(10, samples_per_shard=4)
    arr = store.array(S.ACTIVATIONS)
    assert arr.chunks == (1, 1, 1, 14, 16)
    assert arr.shards == (1, 1, 4, 14, 16)
    # schema v2: one file per shard block holding every layer and language of the block
    assert store.array(S.COMPLETE).chunks == (4, 2, 4)
    assert store.array(S.INPUT_IDS).chunks == (2, 4, 14)
    assert store.array(S.N_TOKENS).chunks == (2, 4)
    # labels are written by init and append only: chunks of 64 blocks
    assert store.array(S.GENDER).chunks == (256,)
    assert store.array(S.CAPTION).chunks == (256, 2)
    assert arr.attrs["precision"] == "bf16"


@pytest.mark.parametrize("compressor", ["blosc-zstd", "blosc-lz4", "zstd", "none"])
def test_activations_roundtrip_bit_exact(make_store, compressor):
    store = make_store(
        10, samples_per_shard=4, config=StoreConfig(samples_per_shard=4, compressor=compressor)
    )
    rng = np.random.default_rng(1)
    values = round_to_bf16(rng.standard_t(3, size=(4, 14, 16)).astype(np.float32) * 50)
    back = roundtrip(store, values, start=4, layer=2, language="ar")
    np.testing.assert_array_equal(back, values)
    # the tail block is shorter than a shard
    tail = round_to_bf16(rng.normal(size=(2, 14, 16)).astype(np.float32))
    np.testing.assert_array_equal(roundtrip(store, tail, start=8, layer=0, language="en"), tail)


def test_layer_subset_and_coordinates(make_store):
    store = make_store(5, samples_per_shard=2, layers=[3, 1])
    assert store.layout.layers == (1, 3)
    assert list(store.dataset().layer.values) == [1, 3]
    with pytest.raises(SaeStoreError, match=r"layer 2 is not in the store; it holds layers \[1, 3\]"):
        store.write(S.COMPLETE, np.ones(2, bool), start=0, layer=2, language="en")


def test_unaligned_region_write_refused_and_nothing_written(make_store):
    store = make_store(10, samples_per_shard=4)
    with pytest.raises(
        AlignmentError, match=r"sample range 2:6 is not aligned to shard blocks of 4 samples.*use 0:8"
    ):
        store.write(S.ACTIVATIONS, np.ones((4, 14, 16), np.float32), start=2, layer=0, language="en")
    with pytest.raises(AlignmentError, match=r"sample range 8:12 is empty or outside the store's 0:10"):
        store.write(S.COMPLETE, np.ones(4, bool), start=8, layer=0, language="en")
    assert not list((store.path / S.ACTIVATIONS).glob("c/**/*.*"))
    assert not store.read_flags().any()


def test_open_refuses_missing_and_foreign_paths(tmp_path):
    (tmp_path / "plain").mkdir()
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    refusals = {
        "nowhere": r"no activation store at .*nowhere.*sae-store init",
        "plain": r"exists but is not an activation store \(no zarr.json\)",
        "foreign.zarr": r"a Zarr group but not an sae-store activation store",
    }
    for name, error in refusals.items():
        with pytest.raises(StoreNotFoundError, match=error):
            open_store(tmp_path / name)


def test_open_refuses_other_schema_version(make_store):
    store = make_store(4)
    meta = store.path / "zarr.json"
    doc = json.loads(meta.read_text())
    info = json.loads(doc["attributes"]["sae_store"])
    doc["attributes"]["sae_store"] = json.dumps({**info, "schema_version": SCHEMA_VERSION + 1})
    meta.write_text(json.dumps(doc))
    with pytest.raises(
        SchemaVersionError,
        match=rf"schema version {SCHEMA_VERSION + 1}, but this sae-store understands "
        rf"version {SCHEMA_VERSION}",
    ):
        open_store(store.path)


def test_create_refuses_existing_paths_and_bad_arguments(tmp_path, make_store):
    store = make_store(4)
    with pytest.raises(SaeStoreError, match=r"an activation store already exists at .*sae-store append"):
        create_store(store.path, samples_table(4), model_info())
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x.txt").write_text("mine")
    with pytest.raises(SaeStoreError, match=r"exists and is not an activation store; choose a new path"):
        create_store(tmp_path / "occupied", samples_table(4), model_info())
    assert (tmp_path / "occupied" / "x.txt").read_text() == "mine"
    with pytest.raises(SaeStoreError, match=r"layers \[4\] are out of range: the model has layers 0..3"):
        create_store(tmp_path / "a.zarr", samples_table(4), model_info(), layers=[0, 4])
    with pytest.raises(SaeStoreError, match=r"languages \['fr'\] have no prompt; known: \['ar', 'en'\]"):
        create_store(tmp_path / "b.zarr", samples_table(4), model_info(), languages=["fr"])
    dup = samples_table(4)
    dup.loc[2, "sample_id"] = "s0000"
    with pytest.raises(SaeStoreError, match=r"sample ids must be unique; repeated: \['s0000'\]"):
        create_store(tmp_path / "c.zarr", dup, model_info())
    # nothing half-written by the refusals
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["occupied", store.path.name])


def test_store_config_validation():
    with pytest.raises(
        SaeStoreError, match=r"compressor must be a preset \['fast', 'balanced', .* got 'gzip'"
    ):
        StoreConfig(compressor="gzip")  # type: ignore[arg-type]
    with pytest.raises(SaeStoreError, match=r"samples_per_shard must be a positive integer, got 0"):
        StoreConfig(samples_per_shard=0)
    with pytest.raises(SaeStoreError, match=r"precision must be one of \['bf16', 'fp32'\], got 'fp16'"):
        StoreConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(SaeStoreError, match=r"unknown key\(s\) \['shards'\] in StoreConfig"):
        StoreConfig.from_dict({"shards": 3})
    assert StoreConfig.from_dict(StoreConfig(clevel=5).to_dict()) == StoreConfig(clevel=5)


def test_round_to_bf16_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = (rng.standard_t(3, 100_000) * np.exp(rng.normal(size=100_000) * 3)).astype(np.float32)
    x[:4] = [np.nan, np.inf, -np.inf, 3.4e38]
    expected = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(round_to_bf16(x), expected)


@pytest.mark.parametrize(
    ("compressor", "codec"), [("blosc-zstd", "BloscCodec"), ("zstd", "ZstdCodec"), ("none", None)]
)
def test_configured_codec_is_applied(make_store, compressor, codec):
    store = make_store(4, config=StoreConfig(samples_per_shard=4, compressor=compressor, clevel=5))
    compressors = store.array(S.ACTIVATIONS).compressors
    # the compressor, then every inner chunk's checksum
    assert [type(c).__name__ for c in compressors] == ([codec] if codec else []) + ["Crc32cCodec"]
    if codec == "BloscCodec":
        assert compressors[0].cname.value == "zstd" and compressors[0].clevel == 5
