"""What the CRC32C on every chunk costs: writing and streaming activation shards, and ``verify``.

Two stores of the same synthetic Gemma-like activations (``fast`` preset), identical except that the
arrays of one end their codecs with ``crc32c`` (every store made now) and those of the other do not
(stores made before). Interleaved in rounds, A then B, same data, same thread pool:

1. write MB/s (raw float32 per second): every sample chunk encoded and each shard written whole
   (``activation_codec.encode_chunk`` + ``write_activation_shard``, the extraction writer's path);
2. streamed read MB/s: every block decoded by ``read_activations`` (the path of the training data
   provider and ``encode``), checksums checked;
3. ``verify`` GB/s of stored bytes (every file of the store decoded and checked).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np

from benchmarks.bench_store import TOKENS, synthetic_activations, synthetic_inputs
from benchmarks.bench_verify import fill_synthetic, timed
from benchmarks.run import result
from sae_store.store import ActivationStore, StoreConfig, create_store
from sae_store.store import create as create_module
from sae_store.store import schema as S
from sae_store.store.codecs import DEFAULT_COMPRESSORS
from sae_store.store.verify import verify_store

N_SAMPLES, HIDDEN, SHARD, ROUNDS, THREADS = 64, 2560, 16, 9, 2


def _store(path: Path, *, checksums: bool) -> ActivationStore:
    samples, info = synthetic_inputs(N_SAMPLES, HIDDEN, {"en": TOKENS}, image_tokens=256)
    config = StoreConfig(samples_per_shard=SHARD, compressor="fast")
    if checksums:
        return create_store(path, samples, info, config=config)

    def without(compressors=None):  # what create_array used before checksums
        return DEFAULT_COMPRESSORS if compressors is None else compressors

    with mock.patch.object(create_module, "with_checksum", without):
        return create_store(path, samples, info, config=config)


def _write(store: ActivationStore, values: np.ndarray, pool: ThreadPoolExecutor) -> None:
    encode = store.activation_codec.encode_chunk
    for start in range(0, N_SAMPLES, SHARD):
        chunks = list(pool.map(encode, values[start : start + SHARD]))
        store.write_activation_shard(0, "en", start, chunks)


def _read(store: ActivationStore, out: np.ndarray, pool: ThreadPoolExecutor) -> None:
    for start in range(0, N_SAMPLES, SHARD):
        store.read_activations(0, "en", start, start + SHARD, out=out, pool=pool)


def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-checksums-"))
    try:
        values = synthetic_activations(np.random.default_rng(0), N_SAMPLES)
        stores = {
            name: _store(tmp / f"{name}.zarr", checksums=name == "crc32c") for name in ("none", "crc32c")
        }
        assert (
            stores["none"].activation_codec.checksum is False and stores["crc32c"].activation_codec.checksum
        )
        for store in stores.values():
            fill_synthetic(store, values, SHARD)
        mb = values.nbytes / 1e6
        out = np.empty((SHARD, TOKENS, HIDDEN), np.float32)
        rounds: list[dict[str, float]] = []
        with ThreadPoolExecutor(THREADS) as pool:
            for i in range(ROUNDS):
                r: dict[str, float] = {}
                order = list(stores.items())[:: 1 if i % 2 == 0 else -1]  # A B, then B A: no order bias
                for name, store in order:
                    r[f"write {name}"] = mb / timed(lambda store=store: _write(store, values, pool))
                for name, store in order:
                    r[f"read {name}"] = mb / timed(lambda store=store: _read(store, out, pool))
                for name, store in order:
                    report = verify_store(store, workers=THREADS)
                    assert report.ok, report.render()
                    r[f"verify {name}"] = report.bytes_checked / 1e9 / report.seconds
                rounds.append(r)
        stored = {
            n: sum(p.stat().st_size for p in (s.path / S.ACTIVATIONS).rglob("*") if p.is_file())
            for n, s in stores.items()
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    # per round (the two runs of a round were side by side), then the median over rounds
    cost = {
        m: 100 * statistics.median(r[f"{m} none"] / r[f"{m} crc32c"] - 1 for r in rounds)
        for m in ("write", "read", "verify")
    }
    lines = [
        f"{N_SAMPLES} samples x {TOKENS} tokens x {HIDDEN} hidden ({mb:.0f} MB of float32), `fast` preset, "
        f"shards of {SHARD}, {THREADS} threads, local disk (page cache). Stored: "
        f"{stored['none'] / 1e6:.1f} MB without, {stored['crc32c'] / 1e6:.1f} MB with checksums (+4 bytes "
        "per chunk).",
        "",
        "| round | write MB/s none | write MB/s crc32c | read MB/s none | read MB/s crc32c "
        "| verify GB/s none | verify GB/s crc32c |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate([*rounds, med], 1):
        label = "median" if i > len(rounds) else str(i)
        cells = " | ".join(
            f"{r[f'{m} {n}']:.{3 if m == 'verify' else 0}f}"
            for m in ("write", "read", "verify")
            for n in ("none", "crc32c")
        )
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        f"Cost of the checksums (time with / time without - 1 per round, median of {ROUNDS} rounds in "
        f"alternating order): write **{cost['write']:+.1f} %**, "
        f"streamed read **{cost['read']:+.1f} %**, verify **{cost['verify']:+.1f} %**.",
    ]
    return result(
        "Chunk checksums (CRC32C): cost on write, streamed read and verify",
        lines,
        cost_percent=cost,
        medians=med,
    )


if __name__ == "__main__":
    main()
