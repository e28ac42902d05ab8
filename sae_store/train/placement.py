"""Where a layer's training data lives while an SAE trains: on the training device, in host RAM, or
streamed from the store through shuffle buffers - decided from the two budgets of
:class:`~sae_store.train.config.DataConfig` (``device_memory`` and ``memory_budget``)."""

from __future__ import annotations

import logging

import torch

from sae_store.store import schema as S
from sae_store.train.config import DataConfig
from sae_store.train.resident import free_memory
from sae_store.units import format_bytes, format_size, share_bytes

log = logging.getLogger(__name__)


def fits_device(
    config: DataConfig, device: torch.device, *, n_train: int, d_in: int, dtype: torch.dtype, unit_rows: int
) -> bool:
    """Whether ``n_train`` vectors of width ``d_in`` in ``dtype``, their draw order (8 bytes each), two
    float32 batches and one unit of ``unit_rows`` float32 rows in transit fit ``config.device_memory``
    on ``device``; says so, with the sizes, when they do not (``device_memory`` 0: silently not)."""
    share = config.device_memory
    if share == "0":
        return False
    free = free_memory(device) if share.endswith("%") else 0
    budget = share_bytes(share, free)
    data_bytes = n_train * d_in * dtype.itemsize
    extra = n_train * 8 + (2 * config.batch_size + unit_rows) * d_in * 4
    if data_bytes + extra <= budget:
        return True
    of_free = f" of the {format_bytes(free)} free" if share.endswith("%") else ""
    log.warning(
        "layer %d's training data (%d vectors x %d in %s: %s, plus %s for its order and batches) does not "
        "fit --device-memory %s%s on %s (%s); reading it through host memory instead (--memory-budget %s). "
        "Raise --device-memory to keep it on the device.",
        config.layer, n_train, d_in, str(dtype).removeprefix("torch."), format_bytes(data_bytes),
        format_bytes(extra), share, of_free, device, format_bytes(budget), format_size(config.memory_budget),
    )  # fmt: skip
    return False


def units_per_round(sizes: list[int], counts: list[int], layout: S.StoreLayout, config: DataConfig) -> int:
    """Blocks per shuffle buffer: all of them when the data fits the memory budget. ``sizes`` are the
    buffer rows of each block, ``counts`` its vectors.

    The budget covers two batches (the one being drawn and the one the caller still holds), each
    read thread's sample buffer and chunk bytes (at most a sample's float32 size each), and one (two
    with prefetch) shuffle buffers.
    """
    d = layout.hidden_size
    fixed = (2 * config.read_threads * layout.max_tokens + 2 * config.batch_size) * d * 4
    if (sum(sizes) * d * 4) + fixed <= config.memory_budget:
        return len(sizes)
    buffer_bytes = (2 if config.prefetch else 1) * max(sizes) * d * 4
    per_round = min(max(1, (config.memory_budget - fixed) // buffer_bytes), len(sizes))
    if config.memory_budget - fixed < buffer_bytes:
        log.warning(
            "memory budget %d B is below what one shard block needs (%d B); using one block anyway",
            config.memory_budget,
            fixed + buffer_bytes,
        )
    smallest = sum(sorted(counts)[:per_round])
    if per_round < len(sizes) and smallest < 4 * config.batch_size:
        log.warning(
            "a shuffle buffer of %d block(s) holds as few as %d vectors, under 4 batches of %d: batches "
            "mix few images; raise the memory budget for better shuffled batches",
            per_round,
            smallest,
            config.batch_size,
        )
    return per_round
