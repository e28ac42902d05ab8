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
    def load(i: int, out: np.ndarray) -> np.ndarray:
        if loads is not None:
            loads.append(i)
        out[: len(units[i])] = units[i]
        return np.arange(len(units[i]))

    return load


def _stream(units: list[np.ndarray], **kw) -> ShuffledBatches:
    kw = {"batch_size": 4, "units_per_round": 2, "seed": 0, "prefetch": False, **kw}
    return ShuffledBatches(_loader(units), [len(u) for u in units], D, **kw)


def _take(stream: ShuffledBatches, n: int) -> list[torch.Tensor]:
    return [next(stream) for _ in range(n)]


def test_an_epoch_draws_each_vector_exactly_once_and_rounds_mix_units():
    units = _units([8, 8, 8, 8, 8])  # 3 rounds: 2 + 2 + 1 units -> 16 + 16 + 8 vectors, 10 batches
    stream = _stream(units)
    batches = _take(stream, 10)
    assert stream.position == BatchPosition(1, 0, 0)
    ids = torch.cat(batches)[:, 0].numpy()
    assert len(ids) == len(set(ids.tolist())) == 40
    assert set(ids.tolist()) == set(range(40))
    assert next(stream)[0, 0] >= 0 and stream.position.epoch == 1
    first_round = torch.cat(batches[:4])
    assert len(set(first_round[:, 1].tolist())) == 2  # two units mixed in one buffer
    assert not torch.equal(first_round[:, 0], first_round[:, 0].sort().values)  # shuffled


def test_rows_a_loader_leaves_out_are_never_drawn():
    units = _units([6, 8, 4])

    def odd_rows_unusable(i: int, out: np.ndarray) -> np.ndarray:
        out[...] = units[i]
        out[1::2] = np.nan  # e.g. rows decoded with the others but not selected
        return np.arange(0, len(out), 2)

    stream = ShuffledBatches(odd_rows_unusable, [6, 8, 4], D, batch_size=3, units_per_round=2, prefetch=False)
    drawn = torch.cat(_take(stream, 6))[:, 0].tolist()  # 2 epochs of the 9 usable rows
    expected = [float(x) for u in units for x in u[::2, 0]]
    assert sorted(drawn[:9]) == sorted(drawn[9:]) == sorted(expected)


def test_a_batch_spanning_rounds_takes_the_tail_of_one_and_the_head_of_the_next():
    units = _units([3, 3, 3, 3])  # rounds of 6 vectors, batches of 4: no vector is left out
    stream = _stream(units)
    batches = _take(stream, 6)  # 24 vectors: 2 epochs of 12
    assert stream.position == BatchPosition(2, 0, 0)
    epoch = torch.cat(batches[:3])[:, 0].tolist()
    assert sorted(epoch) == list(range(12))
    assert set(batches[1][:2, 1].tolist()) != set(batches[1][2:, 1].tolist())  # two rounds, other units


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
    state = head.state_dict()
    assert state == {**head.position._asdict(), "units_per_round": min(per_round, len(units))}
    at = BatchPosition(state["epoch"], state["round"], state["offset"])
    tail = _stream(units, units_per_round=per_round, position=at)
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
            if stream._current is not None:  # None when the batch ended a round exactly
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


def test_scale_and_epochs_running_on_in_one_stream():
    units = _units([5])
    stream = _stream(units, batch_size=2, scale=10.0)
    batches = _take(stream, 5)  # 10 vectors: each of the 5 drawn once in epoch 0 and once in epoch 1
    assert stream.position == BatchPosition(2, 0, 0)
    drawn = torch.cat(batches)[:, 0].tolist()
    assert sorted(drawn[:5]) == sorted(drawn[5:]) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert drawn[:5] != drawn[5:]  # re-permuted every epoch


def test_only_empty_units_are_refused():
    def empty(i: int, out: np.ndarray) -> np.ndarray:
        return np.empty(0, dtype=np.int64)

    stream = ShuffledBatches(empty, [3, 3, 3], D, batch_size=2, units_per_round=1, prefetch=False)
    with pytest.raises(DataError, match=r"no unit holds a usable vector"):
        next(stream)
    with pytest.raises(DataError, match=r"no units to draw batches from"):
        _stream([])
