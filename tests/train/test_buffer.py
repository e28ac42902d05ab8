"""ShuffledBatches: coverage, determinism, exact resume, prefetch and in-RAM equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_store.errors import DataError
from sae_store.train.buffer import BatchPosition, ShuffledBatches

D = 3


def _units(sizes: list[int]) -> list[np.ndarray]:
    """Unit i holds vectors whose first entry is a global id (so batches can be traced back)."""
    out, start = [], 0
    for n in sizes:
        ids = np.arange(start, start + n, dtype=np.float32)
        out.append(np.stack([ids, ids * 0 + len(out), ids * 2], axis=1))
        start += n
    return out


def _loader(units: list[np.ndarray], loads: list[int] | None = None):
    def load(i: int, out: np.ndarray) -> int:
        if loads is not None:
            loads.append(i)
        out[: len(units[i])] = units[i]
        return len(units[i])

    return load


def _stream(units: list[np.ndarray], **kw) -> ShuffledBatches:
    kw = {"batch_size": 4, "units_per_round": 2, "seed": 0, "prefetch": False, **kw}
    return ShuffledBatches(_loader(units), [len(u) for u in units], D, **kw)


def _take(stream: ShuffledBatches, n: int) -> list[torch.Tensor]:
    return [next(stream) for _ in range(n)]


def test_an_epoch_draws_each_vector_at_most_once_and_rounds_mix_units():
    units = _units([8, 8, 8, 8, 8])  # 3 rounds: 2 + 2 + 1 units -> 4 + 4 + 2 batches
    stream = _stream(units)
    batches = _take(stream, 10)
    assert stream.position == BatchPosition(0, 2, 2)
    ids = torch.cat(batches)[:, 0].numpy()
    assert len(ids) == len(set(ids.tolist())) == 40
    assert set(ids.tolist()) == set(range(40))
    assert next(stream)[0, 0] >= 0 and stream.position.epoch == 1
    first_round = torch.cat(batches[:4])
    assert len(set(first_round[:, 1].tolist())) == 2  # two units mixed in one buffer
    assert not torch.equal(first_round[:, 0], first_round[:, 0].sort().values)  # shuffled


def test_same_seed_same_batches_other_seed_other_batches():
    units = _units([7, 9, 5, 11])
    a = _take(_stream(units), 12)
    b = _take(_stream(units), 12)
    c = _take(_stream(units, seed=1), 12)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("per_round", [1, 2, 10])
def test_resuming_from_a_position_continues_the_same_sequence(per_round):
    units = _units([7, 9, 5, 11, 6])
    full = _take(_stream(units, units_per_round=per_round), 25)
    head = _stream(units, units_per_round=per_round)
    _take(head, 11)
    tail = _stream(units, units_per_round=per_round, position=BatchPosition(**head.state_dict()))
    resumed = _take(tail, 14)
    assert all(torch.equal(x, y) for x, y in zip(full[11:], resumed, strict=True))


def test_prefetch_thread_gives_the_same_batches():
    units = _units([7, 9, 5, 11, 6, 8])
    plain = _take(_stream(units), 30)
    with _stream(units, prefetch=True) as stream:
        assert stream._pool is not None
        fetched, buffers = [], set()
        for _ in range(30):
            fetched.append(next(stream))
            assert stream._current is not None
            buffers.add(stream._current.buffer.ctypes.data)
    assert len(buffers) == 2  # the round being drawn and the one being loaded, reused in turn
    assert all(torch.equal(x, y) for x, y in zip(plain, fetched, strict=True))


def test_in_ram_mode_loads_once_and_reshuffles_every_epoch():
    units = _units([6, 6, 6])
    loads: list[int] = []
    stream = ShuffledBatches(
        _loader(units, loads), [6, 6, 6], D, batch_size=6, units_per_round=99, seed=0, prefetch=True
    )
    assert stream.cached and stream._pool is None
    epochs = [torch.cat(_take(stream, 3))[:, 0] for _ in range(3)]
    assert loads == [0, 1, 2]
    assert all(sorted(e.tolist()) == list(range(18)) for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])


def test_scale_and_dropped_tail():
    units = _units([5])
    stream = _stream(units, batch_size=2, scale=10.0)
    batches = _take(stream, 3)  # 2 batches per epoch, the 5th vector is the dropped tail
    assert stream.position == BatchPosition(1, 0, 1)
    assert set(torch.cat(batches[:2])[:, 0].tolist()) <= {0.0, 10.0, 20.0, 30.0, 40.0}
    assert len(set(torch.cat(batches[:2])[:, 0].tolist())) == 4


def test_no_round_holds_a_batch():
    with pytest.raises(
        DataError, match=r"no shuffle buffer holds a whole batch of 10 vectors \(largest round: 6\)"
    ):
        next(_stream(_units([3, 3, 3]), batch_size=10))
    with pytest.raises(DataError, match=r"no units to draw batches from"):
        _stream([])
