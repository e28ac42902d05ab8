"""Whole-shard encode/decode on threads: the same files as zarr's own writes, read back exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sae_store.errors import SaeStoreError
from sae_store.store import StoreConfig
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16, round_to_bf16_
from sae_store.store.shards import ShardCodec, encode_shard, read_shard


def _values(n_samples: int, tokens: int, hidden: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    x = round_to_bf16(rng.standard_t(4, size=(4, 2, n_samples, tokens, hidden)).astype(np.float32))
    x[0, 0, 1] = np.nan  # a failed sample: its chunk is fill, left out of the shard
    x[1, 1, 5, 7:] = np.nan  # padding
    x[2, 0, :] = np.nan  # a shard of only failed samples: no file at all
    return x


def _files(store) -> list:
    return sorted(
        p.relative_to(store.path) for p in (store.path / S.ACTIVATIONS / "c").rglob("*") if p.is_file()
    )


@pytest.mark.parametrize("compressor", ["fast", "balanced", "compact", "zstd", "none"])
def test_shard_files_are_byte_identical_to_zarr(make_store, compressor):
    """Two stores: one written by zarr (the reference), one by ShardCodec on 3 threads. Every shard
    file (including a partial last shard and all-fill shards) must hold the same bytes."""
    config = StoreConfig(samples_per_shard=4, compressor=compressor)
    ref, ours = make_store(10, config=config), make_store(10, config=config)
    lay = ref.layout
    x = _values(lay.n_samples, lay.max_tokens, lay.hidden_size)
    ref.array(S.ACTIVATIONS, mode="r+")[...] = x
    codec = ShardCodec.for_array(ours.path, ours.array(S.ACTIVATIONS))
    padded = np.full((*x.shape[:2], 12, *x.shape[3:]), np.nan, np.float32)
    padded[:, :, :10] = x
    with ThreadPoolExecutor(3) as pool:
        for li in range(4):
            for gi in range(2):
                for b in range(3):
                    part = padded[li : li + 1, gi : gi + 1, 4 * b : 4 * b + 4]
                    codec.write((li, gi, b, 0, 0), encode_shard(codec, part, pool=pool))
    files = sorted(
        p.relative_to(ref.path) for p in (ref.path / S.ACTIVATIONS / "c").rglob("*") if p.is_file()
    )
    assert len(files) == 4 * 2 * 3 - 3  # layer 2, language 0 holds only NaN: three shards without a file
    for rel in files:
        assert (ours.path / rel).read_bytes() == (ref.path / rel).read_bytes(), rel
    mine = sorted(
        p.relative_to(ours.path) for p in (ours.path / S.ACTIVATIONS / "c").rglob("*") if p.is_file()
    )
    assert mine == files
    np.testing.assert_array_equal(np.asarray(ours.array(S.ACTIVATIONS)[...]), x)


def test_read_shard_decodes_selected_chunks_and_missing_shards(make_store):
    store = make_store(8, config=StoreConfig(samples_per_shard=4, compressor="fast"))
    lay = store.layout
    x = _values(8, lay.max_tokens, lay.hidden_size)
    store.array(S.ACTIVATIONS, mode="r+")[...] = x
    codec = ShardCodec.for_array(store.path, store.array(S.ACTIVATIONS))
    out = np.zeros((1, 1, 4, lay.max_tokens, lay.hidden_size), np.float32)
    with ThreadPoolExecutor(2) as pool:
        read_shard(codec, (1, 1, 1, 0, 0), out, chunks=[3, 1], pool=pool)
        np.testing.assert_array_equal(out[0, 0, [3, 1]], x[1, 1, [7, 5]])
        assert not out[0, 0, [0, 2]].any()  # rows not asked for are left alone
        read_shard(codec, (0, 0, 0, 0, 0), out)  # chunk 1 is fill: not in the file
        np.testing.assert_array_equal(out[0, 0], x[0, 0, :4])
        read_shard(codec, (2, 0, 1, 0, 0), out[:, :, :2], pool=pool)  # no file: all fill
        assert np.isnan(out[0, 0, :2]).all()


def test_damaged_shard_index_is_refused(make_store):
    store = make_store(8, config=StoreConfig(samples_per_shard=4))
    x = _values(8, store.layout.max_tokens, store.layout.hidden_size)
    store.array(S.ACTIVATIONS, mode="r+")[...] = x
    codec = ShardCodec.for_array(store.path, store.array(S.ACTIVATIONS))
    path = codec.path((0, 1, 0, 0, 0))
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    out = np.empty((1, 1, 4, store.layout.max_tokens, store.layout.hidden_size), np.float32)
    with pytest.raises(SaeStoreError, match=r"is damaged: its index checksum does not match"):
        read_shard(codec, (0, 1, 0, 0, 0), out)


def test_unsharded_array_is_refused(make_store):
    store = make_store(4)
    with pytest.raises(SaeStoreError, match=r"array 'complete' is not sharded"):
        ShardCodec.for_array(store.path, store.array(S.COMPLETE))


def test_round_to_bf16_in_place_equals_the_copy():
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, (6, 50)) * np.exp(rng.normal(size=(6, 50)) * 4)).astype(np.float32)
    x[0, :4] = [np.nan, np.inf, -np.inf, 3.4e38]
    expected = round_to_bf16(x)
    assert round_to_bf16_(x) is x
    np.testing.assert_array_equal(x.view(np.uint32), expected.view(np.uint32))


def test_read_activations_reads_whole_blocks_or_chosen_samples(make_store):
    store = make_store(10, config=StoreConfig(samples_per_shard=4, compressor="balanced"))
    lay = store.layout
    x = _values(10, lay.max_tokens, lay.hidden_size)
    store.array(S.ACTIVATIONS, mode="r+")[...] = x
    with ThreadPoolExecutor(2) as pool:
        np.testing.assert_array_equal(store.read_activations(1, "ar", 0, 10, pool=pool), x[1, 1])
        out = np.zeros((6, lay.max_tokens, lay.hidden_size), np.float32)
        store.read_activations(3, "en", 4, 10, out=out, samples=[0, 5], pool=pool)
    np.testing.assert_array_equal(out[[0, 5]], x[3, 0, [4, 9]])
    assert not out[1:5].any()
    with pytest.raises(SaeStoreError, match=r"not aligned to shard blocks of 4 samples"):
        store.read_activations(0, "en", 2, 6)
    with pytest.raises(SaeStoreError, match=r"out has shape \(6, 14, 16\), but samples 0:4 need \(4, 14, 16"):
        store.read_activations(0, "en", 0, 4, out=out)
