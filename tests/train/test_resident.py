"""The layer resident on the training device (the host on CPU): the same batches as the in-RAM
provider, positions that carry over between them, the fallback when it does not fit, and the
budget's text."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from sae_store.errors import SaeStoreError
from sae_store.store import schema as S
from sae_store.train.buffer import ShuffledBatches
from sae_store.train.config import DataConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.resident import ResidentBatches
from sae_store.units import parse_share, share_bytes


def _providers(store, **kw) -> tuple[StoreDataProvider, StoreDataProvider]:
    config = DataConfig(**{"layer": 1, "batch_size": 10, "val_fraction": 0.2, **kw})
    resident = StoreDataProvider(store, config)
    in_ram = StoreDataProvider(store, DataConfig(**{**config.to_dict(), "device_memory": "0"}))
    assert resident.summary.resident and resident.summary.in_memory
    assert in_ram.summary.in_memory and not in_ram.summary.resident
    return resident, in_ram


def _take(stream, n: int) -> torch.Tensor:
    return torch.cat([next(stream) for _ in range(n)])


def test_resident_batches_equal_the_in_ram_providers_for_the_same_seed(filled_store):
    store = filled_store()
    arr = store.zarr_group()[S.ACTIVATIONS]
    block = np.asarray(arr[1, 0, 4:8])
    block[1, 2, 5] = np.nan  # a selected vector left out: the resident rows are compacted
    store.write(S.ACTIVATIONS, block, start=4, layer=1, language="en")
    for seed in (0, 3):
        resident, in_ram = _providers(store, seed=seed)
        a, b = resident.batches(scale=1.7), in_ram.batches(scale=1.7)
        assert isinstance(a, ResidentBatches) and isinstance(b, ShuffledBatches) and b.cached
        n = resident.summary.train_tokens - 1
        batches = -(-3 * n // 10)  # three epochs, which end inside batches
        x, y = _take(a, batches), _take(b, batches)
        assert x.dtype == torch.float32 and resident._resident is not None
        # float32 on a CPU (bf16 on a GPU): the stored bf16 values, exactly
        assert resident._resident.dtype == torch.float32 and len(resident._resident) == n
        torch.testing.assert_close(x, y, rtol=0, atol=0)
        drawn = 10 * batches
        position = {"epoch": drawn // n, "round": 0, "offset": drawn % n, "units_per_round": 12}
        assert a.state_dict() == b.state_dict() == position
    assert resident.nonfinite_skipped == in_ram.nonfinite_skipped == 1


def test_positions_carry_over_between_resident_and_in_ram_streams(filled_store):
    store = filled_store()
    resident, in_ram = _providers(store)
    straight = _take(resident.batches(), 30)
    head = resident.batches()
    _take(head, 11)
    from_ram = in_ram.batches(position=head.state_dict())  # resumed where device memory is short
    torch.testing.assert_close(_take(from_ram, 19), straight[110:], rtol=0, atol=0)
    other = in_ram.batches()
    _take(other, 17)
    back = resident.batches(position=other.state_dict())
    torch.testing.assert_close(_take(back, 13), straight[170:], rtol=0, atol=0)
    other.close()


def test_a_streamed_checkpoint_resumes_streamed_even_where_the_layer_fits_the_device(filled_store):
    store = filled_store()
    config = DataConfig(layer=1, batch_size=10, device_memory="0", memory_budget=3 * 4 * 14 * 16 * 4)
    streamed = StoreDataProvider(store, config)
    assert streamed.summary.units_per_round == 1
    resident = StoreDataProvider(store, DataConfig(layer=1, batch_size=10))
    head = streamed.batches()
    straight = _take(streamed.batches(), 25)
    _take(head, 9)
    resumed = resident.batches(position=head.state_dict())
    assert isinstance(resumed, ShuffledBatches) and resumed.units_per_round == 1
    torch.testing.assert_close(_take(resumed, 16), straight[90:], rtol=0, atol=0)


def test_a_layer_too_large_for_the_device_budget_is_read_through_host_memory_and_says_so(
    filled_store, caplog
):
    store = filled_store()
    with caplog.at_level(logging.WARNING, logger="sae_store.train.placement"):
        provider = StoreDataProvider(store, DataConfig(layer=1, batch_size=10, device_memory="4KiB"))
    assert not provider.summary.resident and provider.summary.in_memory
    assert isinstance(provider.batches(), ShuffledBatches)
    n = provider.summary.train_tokens
    assert provider.summary.data_bytes == n * 16 * 2
    extra = n * 8 + (2 * 10 + max(provider._sizes)) * 16 * 4  # two batches and one unit in transit
    assert caplog.messages == [
        f"layer 1's training data ({n} vectors x 16 in float32: {n * 64 / 1000:.2f} KB, plus "
        f"{extra / 1000:.2f} KB for its order and batches) does not fit --device-memory 4KiB on cpu "
        "(4.10 KB); reading it through host memory instead (--memory-budget 2GiB). Raise --device-memory "
        "to keep it on the device."
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sae_store.train.placement"):
        off = StoreDataProvider(store, DataConfig(layer=1, batch_size=10, device_memory="0"))
    assert not off.summary.resident and caplog.messages == []  # asked for: nothing to say


def test_device_memory_shares_and_sizes():
    assert [parse_share(t) for t in ("50%", " 12.5% ", "40GiB", "0", 1000)] == [
        "50%",
        "12.5%",
        "40GiB",
        "0",
        "1000",
    ]
    assert share_bytes("50%", 1000) == 500 and share_bytes("2KiB", 10) == 2048 and share_bytes("0", 10) == 0
    for bad, message in {
        "150%": "share '150%' is not a percentage in (0, 100]; give e.g. 50%, a size such as 40GiB, or 0",
        "x%": "share 'x%' is not a percentage in (0, 100]",
        "lots": "size 'lots' is not understood",
    }.items():
        with pytest.raises(SaeStoreError, match=re.escape(message)):
            parse_share(bad)
    assert DataConfig(layer=0).device_memory == "50%"
