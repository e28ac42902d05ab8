"""A layer's training vectors resident on the training device, drawn as shuffled batches there.

:func:`load_resident` decodes every unit (shard block of one language) once on the provider's read
threads into a reusable host buffer (pinned when the device is a GPU, so the copy overlaps the next
unit's decoding) and keeps its usable rows on the device in the store's precision (bf16 stores: 2
bytes a value, nothing lost). :class:`ResidentBatches` then draws batches on the device: an index
slice and a gather per batch, no host work and no wait for the device.

The batches are those of :class:`~sae_store.train.buffer.ShuffledBatches` holding everything in one
buffer (in-RAM sampling) for the same seed: epoch ``e`` draws the rows in the order of
``np.random.default_rng([seed, e, 0, 1]).permutation(n)``, computed on the host once per epoch and
moved to the device; batches are consecutive slices of the epochs. A checkpoint's position from
either one continues in the other.

On a CPU the host is the device: the same code keeps the data in RAM in the store's precision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psutil
import torch
from torch import Tensor

from sae_store.train.buffer import BatchPosition

log = logging.getLogger(__name__)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's free memory, or the host's available RAM for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def load_resident(
    load_unit: Callable[[int, np.ndarray], np.ndarray],
    unit_sizes: Sequence[int],
    d: int,
    *,
    rows: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """The usable rows of every unit, in unit order, as one [n, d] tensor of ``dtype`` on ``device``.

    ``load_unit(i, out)`` writes unit ``i`` (``unit_sizes[i]`` rows) into ``out`` and returns its usable
    rows; ``rows`` bounds their total. Unit ``i + 1`` is decoded while unit ``i`` is copied.
    """
    data = torch.empty((rows, d), dtype=dtype, device=device)
    cuda = device.type == "cuda"
    capacity = max(unit_sizes)
    host = [torch.empty((capacity, d), dtype=torch.float32, pin_memory=cuda) for _ in range(2)]
    copied: list[Any] = [None, None]  # per host buffer: the event after which it may be refilled

    def decode(i: int) -> tuple[Tensor, np.ndarray]:
        k = i % 2
        if copied[k] is not None:
            copied[k].synchronize()
        buf = host[k][: unit_sizes[i]]
        return buf, load_unit(i, buf.numpy())

    n = 0
    with ThreadPoolExecutor(1, thread_name_prefix="sae-resident") as pool:
        pending = pool.submit(decode, 0)
        for i in range(len(unit_sizes)):
            buf, used = pending.result()
            if i + 1 < len(unit_sizes):
                pending = pool.submit(decode, i + 1)
            src = buf.to(device, non_blocking=True) if cuda else buf
            if len(used) == len(buf):
                data[n : n + len(used)].copy_(src)
            else:
                data[n : n + len(used)].copy_(src[torch.from_numpy(used).to(device)])
            if cuda:
                copied[i % 2] = torch.cuda.Event()
                copied[i % 2].record()
            n += len(used)
    return data[:n]


class ResidentBatches:
    """An endless, resumable iterator of shuffled float32 batches [batch_size, d] drawn on the device
    from ``data`` (the usable rows, :func:`load_resident`), times ``scale``."""

    def __init__(
        self,
        data: Tensor,
        *,
        batch_size: int,
        seed: int = 0,
        scale: float = 1.0,
        units: int = 1,
        position: BatchPosition | None = None,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.scale = scale
        self._scale = torch.tensor(scale, dtype=torch.float32, device=data.device)
        self.units = units
        self.position = position or BatchPosition()
        self._order: tuple[int, Tensor] | None = None

    def state_dict(self) -> dict[str, int]:
        """The position of the next batch, for checkpoints (as ShuffledBatches with one round)."""
        return {**self.position._asdict(), "units_per_round": self.units}

    def __iter__(self) -> ResidentBatches:
        return self

    def _epoch_order(self, epoch: int) -> Tensor:
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0, 1])
            perm = torch.from_numpy(rng.permutation(len(self.data)))
            if self.data.device.type == "cuda":
                perm = perm.pin_memory()
            self._order = (epoch, perm.to(self.data.device, non_blocking=True))
        return self._order[1]

    def __next__(self) -> Tensor:
        n, parts, need = len(self.data), [], self.batch_size
        while need:
            epoch, _, offset = self.position
            take = min(n - offset, need)
            parts.append(self._epoch_order(epoch)[offset : offset + take])
            need -= take
            offset += take
            self.position = BatchPosition(epoch, 0, offset) if offset < n else BatchPosition(epoch + 1, 0, 0)
        index = parts[0] if len(parts) == 1 else torch.cat(parts)
        batch = self.data.index_select(0, index).float()
        return batch if self.scale == 1.0 else batch.mul_(self._scale)

    def close(self) -> None:
        """Nothing to stop (the data stays until the stream is dropped)."""

    def __enter__(self) -> ResidentBatches:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
