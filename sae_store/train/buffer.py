"""Shuffled batches of token vectors drawn from units loaded on demand (the store-agnostic core of
the data provider).

A *unit* is whatever the caller can load as one array of token vectors, e.g. one shard block of
one language; the loader says which of the rows it wrote are usable, so it may decode straight into
the buffer and leave unused rows in place. Each epoch visits the units in a seeded random order,
``units_per_round`` at a time; a round's vectors fill a shuffle buffer that is drawn in a seeded
random order. Batches are consecutive slices of the stream of rounds, so every loaded vector is used
once per epoch: a batch that reaches the end of a round is completed from the next one (at an
epoch's end, from the next epoch). With ``units_per_round >= n_units`` everything is loaded once,
kept, and re-permuted every epoch (in-RAM sampling). The batch sequence is a pure function of the
seed and ``units_per_round``, so these and a position ``(epoch, round, offset)`` are all a checkpoint
needs: only the rounds from there on are read again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from sae_store.errors import DataError


class BatchPosition(NamedTuple):
    """Where a :class:`ShuffledBatches` stream is: ``offset`` vectors of ``round`` of ``epoch`` drawn."""

    epoch: int = 0
    round: int = 0
    offset: int = 0


class _Round(NamedTuple):
    epoch: int
    round: int
    buffer: np.ndarray
    """The round's rows (reused by a later round once this one is drawn)."""
    rows: np.ndarray
    """The usable rows of ``buffer``, in the order the units were loaded."""
    order: np.ndarray
    """``rows`` in the order they are drawn."""


class ShuffledBatches(Iterator[Tensor]):
    """An endless, resumable iterator of shuffled float32 batches [batch_size, d].

    Parameters
    ----------
    load_unit
        ``load_unit(i, out)`` writes the token vectors of unit ``i`` into ``out`` (``unit_sizes[i]``
        rows) and returns the indices of its usable rows, in increasing order.
    unit_sizes
        Rows each unit writes (buffers are allocated once from them).
    d
        Width of the vectors.
    batch_size
        Vectors per batch.
    units_per_round
        Units mixed in one shuffle buffer; ``>= len(unit_sizes)`` loads everything once.
    seed
        Seed of the unit order and of every buffer permutation.
    scale
        Factor applied to every batch (input normalisation).
    prefetch
        Load the next round in a background thread while the current one is drawn.
    position
        Where to start (from :meth:`state_dict` of an earlier stream).
    """

    def __init__(
        self,
        load_unit: Callable[[int, np.ndarray], np.ndarray],
        unit_sizes: Sequence[int],
        d: int,
        *,
        batch_size: int,
        units_per_round: int,
        seed: int = 0,
        scale: float = 1.0,
        prefetch: bool = True,
        position: BatchPosition | None = None,
    ) -> None:
        self._pool: ThreadPoolExecutor | None = None
        if not unit_sizes:
            raise DataError("no units to draw batches from")
        self._load_unit = load_unit
        self._sizes = list(unit_sizes)
        self._d = d
        self.batch_size = batch_size
        self.units_per_round = min(max(1, units_per_round), len(self._sizes))
        self.seed = seed
        self.scale = scale
        self.position = position or BatchPosition()
        self._rounds_per_epoch = -(-len(self._sizes) // self.units_per_round)
        self._current: _Round | None = None
        self._empty_rounds = 0
        # round buffers are allocated once and reused (two with prefetch): allocating one per round
        # lets the C allocator keep freed blocks mapped, and resident memory drifts far above the budget
        self._spare: list[np.ndarray] = []
        self._capacity = sum(sorted(self._sizes, reverse=True)[: self.units_per_round])
        if prefetch and not self.cached:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sae-prefetch")
        self._next: Future[_Round] | None = None

    @property
    def cached(self) -> bool:
        """True when all units fit one buffer, loaded once and sampled in RAM."""
        return self.units_per_round >= len(self._sizes)

    def state_dict(self) -> dict[str, int]:
        """The position of the next batch and the units mixed per round (which fix the batch order),
        for checkpoints."""
        return {**self.position._asdict(), "units_per_round": self.units_per_round}

    def __iter__(self) -> ShuffledBatches:
        return self

    def __next__(self) -> Tensor:
        bs, filled = self.batch_size, 0
        batch = np.empty((bs, self._d), dtype=np.float32)
        while filled < bs:
            if self._current is None or self._current[:2] != self.position[:2]:
                self._current = self._take_round(self.position.epoch, self.position.round)
            r, offset = self._current, self.position.offset
            take = min(len(r.order) - offset, bs - filled)
            if take > 0:  # the one copy of each vector: gathered straight into the batch ("clip": the
                # indices are valid, and numpy's default mode would gather into a temporary first)
                out = batch[filled : filled + take]
                np.take(r.buffer, r.order[offset : offset + take], axis=0, out=out, mode="clip")
                filled += take
                self.position = self.position._replace(offset=offset + take)
                self._empty_rounds = 0
            if self.position.offset < len(r.order):
                continue
            self._empty_rounds += 1 if not len(r.order) else 0
            if self._empty_rounds > self._rounds_per_epoch:
                raise DataError(
                    "no unit holds a usable vector (every round of an epoch was empty); check the data "
                    "selection"
                )
            self.position = BatchPosition(*self._following(self.position.epoch, self.position.round), 0)
            if not self.cached:
                self._spare.append(r.buffer)  # drawn: the next load may refill it
                self._current = None
        if self.scale != 1.0:
            batch *= np.float32(self.scale)
        return torch.from_numpy(batch)

    def close(self) -> None:
        """Stop the prefetch thread (pending loads are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> ShuffledBatches:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _following(self, epoch: int, rnd: int) -> tuple[int, int]:
        return (epoch, rnd + 1) if rnd + 1 < self._rounds_per_epoch else (epoch + 1, 0)

    def _units(self, epoch: int, rnd: int) -> np.ndarray:
        if self.cached:  # one canonical buffer for every epoch, so resuming finds the same content
            return np.arange(len(self._sizes))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self._sizes))
        return order[rnd * self.units_per_round : (rnd + 1) * self.units_per_round]

    def _take_round(self, epoch: int, rnd: int) -> _Round:
        if self.cached and self._current is not None:
            loaded = self._current
        elif self._next is not None:
            loaded, self._next = self._next.result(), None
            if loaded[:2] != (epoch, rnd):  # pragma: no cover - positions only move forward
                raise RuntimeError(f"prefetched round {loaded[:2]} but needed {(epoch, rnd)}")
        else:
            loaded = self._load(epoch, rnd)
        if self._pool is not None:
            self._next = self._pool.submit(self._load, *self._following(epoch, rnd))
        rows = loaded.rows
        order = rows[np.random.default_rng([self.seed, epoch, rnd, 1]).permutation(len(rows))]
        return loaded._replace(epoch=epoch, round=rnd, order=order)

    def _load(self, epoch: int, rnd: int) -> _Round:
        buf = self._spare.pop() if self._spare else np.empty((self._capacity, self._d), dtype=np.float32)
        rows, n = [], 0
        for i in self._units(epoch, rnd):
            rows.append(n + self._load_unit(int(i), buf[n : n + self._sizes[i]]))
            n += self._sizes[i]
        # the drawing order is set by _take_round, which knows the position
        return _Round(epoch, rnd, buf, np.concatenate(rows), np.empty(0, dtype=np.int64))
