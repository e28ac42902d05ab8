"""The store data provider: selection by layer, language and role, split by sample, normalisation,
non-finite vectors, memory budget, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sae_store.errors import DataError, IncompleteError, SaeStoreError
from sae_store.roles import TokenRole
from sae_store.store import schema as S
from sae_store.train import data
from sae_store.train.config import DataConfig
from sae_store.train.data import StoreDataProvider

from .conftest import fill_store

# filled_store defaults: 24 samples in blocks of 4, hidden 16; en has 12 tokens (BOS, 4 image, 6 text,
# end), ar 14 (BOS, 4 image, 8 text, end); padding holds NaN


#: A memory budget of 3 shard blocks of the widest language: streamed, one block per shuffle buffer.
STREAMED = 3 * 4 * 14 * 16 * 4


def _cfg(**kw) -> DataConfig:
    return DataConfig(**{"batch_size": 8, **kw})


def _rows(store, layer: int, samples, roles=("image", "text"), languages=("en", "ar")) -> np.ndarray:
    acts = np.asarray(store.zarr_group()[S.ACTIVATIONS][store.layer_index(layer)])
    token_role = np.asarray(store.zarr_group()[S.TOKEN_ROLE][...])
    codes = [int(TokenRole[r.upper()]) for r in roles]
    out = [
        acts[store.language_index(lang), s][np.isin(token_role[store.language_index(lang), s], codes)]
        for lang in languages
        for s in samples
    ]
    return np.concatenate(out)


def _epoch(provider: StoreDataProvider) -> np.ndarray:
    stream = provider.batches()
    batches = [next(stream)]
    while stream.position.epoch == 0:
        batches.append(next(stream))
    stream.close()
    return torch.cat(batches[:-1]).numpy()


def test_selection_split_by_sample_and_roles(filled_store):
    store = filled_store()
    provider = StoreDataProvider(store, _cfg(layer=1, val_fraction=0.25, batch_size=10))
    val = provider.val_samples
    train = np.setdiff1d(np.arange(24), val)
    assert len(val) == 6
    s = provider.summary
    assert (s.train_samples, s.val_samples, s.train_tokens) == (18, 6, 18 * (10 + 12))
    assert s.languages == ["en", "ar"] and s.in_memory and s.units == 2 * 6
    drawn = {r.tobytes() for r in _epoch(provider)}
    train_rows = {r.tobytes() for r in _rows(store, 1, train)}
    val_rows = {r.tobytes() for r in _rows(store, 1, val)}
    assert drawn <= train_rows and not drawn & val_rows
    assert len(drawn) >= len(train_rows) - s.units_per_round * 10  # at most a tail per round dropped
    # the held-out vectors are exactly the validation samples' selected tokens, language by language
    held = torch.cat(list(provider.validation_batches())).numpy()
    np.testing.assert_array_equal(held, _rows(store, 1, sorted(val)))

    image_only = StoreDataProvider(store, _cfg(layer=1, roles=("image",), val_fraction=0.25))
    assert image_only.summary.train_tokens == 18 * 2 * 4
    assert np.array_equal(image_only.val_samples, val)  # the split depends on the seed only
    arabic = StoreDataProvider(store, _cfg(layer=1, languages=("ar",), val_fraction=0.25, seed=5))
    assert arabic.summary.train_tokens == 18 * 12 and not np.array_equal(arabic.val_samples, val)


def test_streaming_under_a_memory_budget_reads_the_same_vectors(filled_store):
    store = filled_store()
    config = _cfg(layer=0, batch_size=8, memory_budget=STREAMED, val_fraction=0.0, device_memory="0")
    streaming = StoreDataProvider(store, config)
    assert not streaming.summary.in_memory and streaming.summary.units_per_round == 1
    in_ram = StoreDataProvider(store, _cfg(layer=0, batch_size=8, val_fraction=0.0, device_memory="0"))
    assert in_ram.summary.in_memory and not in_ram.summary.resident
    all_rows = {r.tobytes() for r in _rows(store, 0, range(24))}
    streamed = {r.tobytes() for r in _epoch(streaming)}
    assert streamed <= all_rows and len(streamed) >= len(all_rows) - 12 * 7
    assert {r.tobytes() for r in _epoch(in_ram)} <= all_rows


def test_streaming_draws_every_training_vector_exactly_once_per_epoch(filled_store):
    store = filled_store()
    config = _cfg(layer=0, batch_size=10, memory_budget=STREAMED, val_fraction=0.0, device_memory="0")
    streaming = StoreDataProvider(store, config)
    n = streaming.summary.train_tokens
    assert not streaming.summary.in_memory and n % 10 != 0  # epochs end inside a batch
    stream = streaming.batches()
    drawn = torch.cat([next(stream) for _ in range(-(-2 * n // 10))]).numpy()
    stream.close()
    expected = sorted(r.tobytes() for r in _rows(store, 0, range(24)))
    assert sorted(r.tobytes() for r in drawn[:n]) == expected  # nothing dropped, nothing twice
    assert sorted(r.tobytes() for r in drawn[n : 2 * n]) == expected  # the next epoch, re-shuffled
    assert not np.array_equal(drawn[:n], drawn[n : 2 * n])


def test_a_checkpoint_position_of_another_batch_order_is_refused(filled_store):
    provider = StoreDataProvider(filled_store(), _cfg(layer=0))
    with pytest.raises(DataError, match=r"data position .* is not one this sae-store resumes from"):
        provider.batches(position={"epoch": 0, "round": 1, "batch": 2})
    stream = provider.batches(position={"epoch": 0, "round": 0, "offset": 3, "units_per_round": 12})
    assert stream.state_dict() == {"epoch": 0, "round": 0, "offset": 3, "units_per_round": 12}


def test_input_scale_brings_mean_norm_to_sqrt_d(filled_store):
    store = filled_store(fill={"norm": 50.0})
    provider = StoreDataProvider(store, _cfg(layer=0, val_fraction=0.0, norm_tokens=10**6, batch_size=64))
    scale = provider.estimate_scale()
    rows = _rows(store, 0, range(24))
    assert scale == pytest.approx(
        math.sqrt(16) / np.linalg.norm(rows.astype(np.float64), axis=1).mean(), rel=1e-6
    )
    batch = next(provider.batches(scale=scale))
    assert float(batch.norm(dim=1).mean()) == pytest.approx(4.0, rel=0.2)


@pytest.mark.parametrize("in_place", [True, False])
def test_nonfinite_vectors_are_skipped_and_counted(filled_store, monkeypatch, in_place):
    monkeypatch.setattr(data, "IN_PLACE_SHARE", 0.0 if in_place else 2.0)
    store = filled_store()
    arr = store.zarr_group()[S.ACTIVATIONS]
    block = np.asarray(arr[0, 0, 4:8])
    block[1, 2, 5] = np.nan  # an image token of sample 5
    block[2, 7, :] = np.inf  # a text token of sample 6
    block[3, 11, 0] = np.nan  # the closing special token: not selected, not counted
    store.write(S.ACTIVATIONS, block, start=4, layer=0, language="en")
    provider = StoreDataProvider(store, _cfg(layer=0, val_fraction=0.0, batch_size=64))
    epoch = _epoch(provider)
    assert np.isfinite(epoch).all()
    assert provider.nonfinite_skipped == 2
    assert provider.describe()["nonfinite_skipped"] == 2


@pytest.mark.parametrize("roles", [("image", "text"), ("image", "special")])  # one run of rows, or two
def test_chunks_decoded_in_place_or_copied_give_the_same_batches(filled_store, monkeypatch, roles):
    store = filled_store()
    config = _cfg(
        layer=1, batch_size=10, memory_budget=STREAMED, val_fraction=0.2, roles=roles, device_memory="0"
    )
    streams = {}
    for share in (0.0, 2.0):  # every chunk decoded straight into the buffer / every chunk copied
        monkeypatch.setattr(data, "IN_PLACE_SHARE", share)
        provider = StoreDataProvider(store, config)
        assert not provider.summary.in_memory
        stream = provider.batches()
        streams[share] = torch.cat([next(stream) for _ in range(40)])  # ~2 epochs
        stream.close()
    assert provider._sizes[0] < 4 * 14  # copied: the selected rows only, no padding or special tokens
    torch.testing.assert_close(streams[0.0], streams[2.0], rtol=0, atol=0)


def test_samples_the_writer_counted_clean_are_not_checked_again(filled_store, monkeypatch):
    store = filled_store()
    arr = store.zarr_group()[S.ACTIVATIONS]
    block = np.asarray(arr[0, 1, 8:12])
    block[2, 3, 0] = np.nan  # an image token of sample 10, Arabic
    store.write(S.ACTIVATIONS, block, start=8, layer=0, language="ar")
    counts = np.zeros((2, 24), np.int32)
    counts[1, 10] = 1  # as the writer records it with --on-nonfinite record
    for lang, row in zip(("en", "ar"), counts, strict=True):
        for start in range(0, 24, 4):
            store.write(S.NONFINITE, row[start : start + 4], start=start, layer=0, language=lang)
    checked = []
    check = StoreDataProvider._nonfinite_rows
    monkeypatch.setattr(
        StoreDataProvider, "_nonfinite_rows", staticmethod(lambda x: checked.append(len(x)) or check(x))
    )
    provider = StoreDataProvider(store, _cfg(layer=0, val_fraction=0.0, batch_size=64))
    epoch = _epoch(provider)
    assert np.isfinite(epoch).all() and provider.nonfinite_skipped == 1
    assert checked == [12]  # sample 10's selected Arabic tokens, nothing else


def test_samples_whose_extraction_failed_are_left_out(filled_store):
    store = filled_store()
    errors = np.array(["CUDA out of memory", "", "", ""], dtype=object)
    store.write(S.EXTRACT_ERROR, errors, start=0, language="ar")
    provider = StoreDataProvider(store, _cfg(layer=0, val_fraction=0.0, batch_size=64))
    assert provider.summary.train_tokens == 24 * 22 - 12
    with pytest.raises(
        DataError,
        match=r"layer 0 has 516 training vectors for roles \['image', 'text'\], fewer "
        r"than one batch of 1000; lower the batch size",
    ):
        StoreDataProvider(store, _cfg(layer=0, val_fraction=0.0, batch_size=1000))


def test_refusals(filled_store, make_store):
    store = filled_store(layers=[0, 1])
    with pytest.raises(SaeStoreError, match=r"layer 3 is not in the store; it holds layers \[0, 1\]"):
        StoreDataProvider(store, _cfg(layer=3))
    refusal = r"language 'fr' is not in the store; it holds languages \['en', 'ar'\]"
    with pytest.raises(SaeStoreError, match=refusal):
        StoreDataProvider(store, _cfg(layer=0, languages=("fr",)))

    partial = make_store(24, samples_per_shard=4, layers=[0, 1], hidden_size=16)
    fill_store(partial, blocks=[0, 1, 3, 4, 5])
    fill_store(partial, layers=[1], languages=["en"], blocks=[2])
    with pytest.raises(
        IncompleteError,
        match=r"layer 1 is not fully extracted: ar samples 8:12 are not complete; "
        r"finish them with `sae-store extract`",
    ):
        StoreDataProvider(partial, _cfg(layer=1))
    with pytest.raises(
        IncompleteError, match=r"layer 0 is not fully extracted: en samples 8:12; ar samples 8:12"
    ):
        StoreDataProvider(partial, _cfg(layer=0))
    StoreDataProvider(partial, _cfg(layer=1, languages=("en",)))  # English alone is complete

    no_image = make_store(8, samples_per_shard=4, layers=[0], hidden_size=16, image_tokens=0)
    fill_store(no_image)
    with pytest.raises(
        DataError,
        match=r"no token vectors selected for layer 0, languages \['en', 'ar'\], roles "
        r"\['image'\]: the store's token roles hold \['pad', 'special', 'text'\]",
    ):
        StoreDataProvider(no_image, _cfg(layer=0, roles=("image",)))


def test_nonfinite_rows_finds_nan_and_inf_rows_but_not_rows_whose_sum_overflows():
    x = np.array([[1, 2], [3e38, 3e38], [np.nan, 0], [4, 5], [-np.inf, 1], [6, 7]], dtype=np.float32)
    np.testing.assert_array_equal(StoreDataProvider._nonfinite_rows(x), [2, 4])
    assert len(StoreDataProvider._nonfinite_rows(x[[0, 1, 3]])) == 0
