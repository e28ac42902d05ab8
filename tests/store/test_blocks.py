from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sae_store.errors import AlignmentError, SaeStoreError
from sae_store.store.blocks import block_ranges, check_aligned, parse_sample_range, task_blocks


@given(st.integers(1, 5000), st.integers(1, 300))
def test_blocks_tile_the_samples(n, s):
    blocks = block_ranges(n, s)
    assert blocks[0].start == 0 and blocks[-1].stop == n
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    assert all(b.stop - b.start == s for b in blocks[:-1]) and 0 < blocks[-1].stop - blocks[-1].start <= s
    for b in blocks:
        check_aligned(b.start, b.stop, n, s)


@given(st.integers(1, 400), st.integers(1, 50), st.integers(1, 40))
def test_tasks_partition_blocks_contiguously_and_evenly(n, s, count):
    blocks = block_ranges(n, s)
    parts = [task_blocks(blocks, i, count) for i in range(count)]
    assert [b for p in parts for b in p] == blocks
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(2, 500), st.integers(2, 50), st.data())
def test_unaligned_ranges_are_refused(n, s, data):
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n))
    aligned = start % s == 0 and (stop % s == 0 or stop == n)
    if aligned:
        check_aligned(start, stop, n, s)
    else:
        with pytest.raises(AlignmentError, match="not aligned to shard blocks"):
            check_aligned(start, stop, n, s)


def test_task_and_range_errors():
    blocks = block_ranges(10, 4)
    with pytest.raises(SaeStoreError, match=r"task index 3 is out of range for 3 tasks \(0..2\)"):
        task_blocks(blocks, 3, 3)
    with pytest.raises(SaeStoreError, match="task count must be at least 1, got 0"):
        task_blocks(blocks, 0, 0)
    assert parse_sample_range("4:", 10) == (4, 10)
    assert parse_sample_range(":8", 10) == (0, 8)
    with pytest.raises(SaeStoreError, match=r"sample range must look like 'A:B' \(e.g. '0:64'\), got '4-8'"):
        parse_sample_range("4-8", 10)
