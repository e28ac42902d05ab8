"""Arithmetic of shard blocks: the units that writers own."""

from __future__ import annotations

from typing import NamedTuple

from sae_store.errors import AlignmentError, SaeStoreError


class Block(NamedTuple):
    """A half-open range ``[start, stop)`` of samples forming one shard block."""

    number: int
    start: int
    stop: int


def block_ranges(n_samples: int, samples_per_shard: int) -> list[Block]:
    """All shard blocks of a store; the last one may be shorter."""
    return [
        Block(i, s, min(s + samples_per_shard, n_samples))
        for i, s in enumerate(range(0, n_samples, samples_per_shard))
    ]


def check_aligned(start: int, stop: int, n_samples: int, samples_per_shard: int) -> None:
    """Refuse a sample range that does not cover whole shard blocks.

    Two processes writing parts of one shard silently lose updates (zarr rewrites whole shards),
    so every writer must own whole blocks.
    """
    if not 0 <= start < stop <= n_samples:
        raise AlignmentError(f"sample range {start}:{stop} is empty or outside the store's 0:{n_samples}")
    if start % samples_per_shard or (stop % samples_per_shard and stop != n_samples):
        lo = start - start % samples_per_shard
        hi = min(-(-stop // samples_per_shard) * samples_per_shard, n_samples)
        raise AlignmentError(
            f"sample range {start}:{stop} is not aligned to shard blocks of {samples_per_shard} samples; "
            f"writers must own whole blocks (use {lo}:{hi}, or start and stop at multiples of "
            f"{samples_per_shard} or at the end, {n_samples})"
        )


def parse_sample_range(text: str, n_samples: int, *, name: str = "sample range") -> tuple[int, int]:
    """Parse ``A:B`` (either side may be empty) into a range within ``0:n_samples``; ``name`` is how
    messages call it (``--sample-range``)."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else n_samples
    except ValueError as e:
        raise SaeStoreError(f"{name} must look like 'A:B' (e.g. '0:64'), got {text!r}") from e
    return start, stop


def task_blocks(blocks: list[Block], task_index: int, task_count: int) -> list[Block]:
    """The contiguous run of blocks that array task ``task_index`` of ``task_count`` owns.

    Blocks are dealt as evenly as possible: the first ``len(blocks) % task_count`` tasks get one more.
    """
    if task_count < 1:
        raise SaeStoreError(f"task count must be at least 1, got {task_count}")
    if not 0 <= task_index < task_count:
        raise SaeStoreError(
            f"task index {task_index} is out of range for {task_count} tasks (0..{task_count - 1})"
        )
    base, extra = divmod(len(blocks), task_count)
    first = task_index * base + min(task_index, extra)
    return blocks[first : first + base + (task_index < extra)]
