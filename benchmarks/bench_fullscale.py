"""A store of the real Gemma-3-4B shape written by the real writer: speed, size, files, training reads.

34 layers x 2 languages x 278 tokens x 2560 hidden, shards of 16 samples, as many samples as
``SAE_BENCH_FULL_GB`` GB of disk allow at the default preset (default 2 GB for ``make bench``; the
run recorded in BENCHMARKS.md used 20). Activations are synthetic float32 with Gemma-like statistics
(:func:`benchmarks.bench_io.gemma_like`: heavy tails, per-token scale, a few huge channels, a large
first token), drawn once as a pool of sample slices and recombined per (layer, sample) with a
per-layer scale, then rounded to bf16 and measured by the writer itself (``BlockWriter``, the path
``sae-store extract`` uses). Reported: writer MB/s and bytes/value per preset (other presets on the
first blocks); per preset, the writer on 1 and 2 threads against the raw encode of the same chunks on
as many threads (blocks rounded beforehand, as extraction rounds on the model's device; interleaved
rounds); files, and the projection to 2000 samples by ``sae-store du``'s own projection before and
after the ``features`` group is added; and the training provider streaming one layer from this
store against sampling it in RAM. The store is written under ``bench-output/`` (or
``SAE_BENCH_DIR``) and deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_io import _cell, gemma_like
from benchmarks.bench_store import gemma_roles, synthetic_inputs
from benchmarks.run import result
from sae_store.device import available_cores
from sae_store.extract.block import BlockData
from sae_store.extract.writer import BlockWriter
from sae_store.store import ActivationStore, Block, StoreConfig, create_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16_
from sae_store.store.config import DEFAULT_COMPRESSOR, PRESETS
from sae_store.store.groups import create_features_group
from sae_store.store.usage import store_usage
from sae_store.train.config import DataConfig
from sae_store.train.data import StoreDataProvider

LAYERS, TOKENS, HIDDEN, SHARD, IMAGE_TOKENS = 34, 278, 2560, 16, 256
LANGS = ("en", "ar")
FULL_SAMPLES = 2000
POOL = 48
BYTES_PER_VALUE_GUESS = 1.75  # the fast preset; only sizes the run, the table reports the measured value
OTHER_PRESET_BLOCKS = 1
RATIO_ROUNDS = 2
PROVIDER_ROUNDS = 3
D_SAE = 8 * HIDDEN
BATCH = 4096


def _n_samples() -> int:
    gb = float(os.environ.get("SAE_BENCH_FULL_GB", "2"))
    per_sample = len(LANGS) * LAYERS * TOKENS * HIDDEN * BYTES_PER_VALUE_GUESS
    return max(SHARD, int(gb * 1e9 / per_sample) // SHARD * SHARD)


def _create(path: Path, n: int, preset: str) -> ActivationStore:
    samples, info = synthetic_inputs(n, HIDDEN, dict.fromkeys(LANGS, TOKENS), image_tokens=IMAGE_TOKENS)
    info = dataclasses.replace(info, n_layers=LAYERS)
    return create_store(path, samples, info, config=StoreConfig(samples_per_shard=SHARD, compressor=preset))


class _Blocks:
    """Synthetic blocks from a pool of sample slices: one (layers, SHARD, T, H) buffer, refilled."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.pool = gemma_like(rng, (POOL, TOKENS, HIDDEN))
        self.scale = np.geomspace(0.5, 40.0, LAYERS).astype(np.float32)  # the stream grows with depth
        self.rng = rng

    def fill(self, out: np.ndarray) -> None:
        picks = self.rng.integers(0, POOL, size=out.shape[:2])
        for k in range(out.shape[0]):
            np.multiply(self.pool[picks[k]], self.scale[k], out=out[k])

    def data(self, out: np.ndarray, start: int, lang: str) -> BlockData:
        n = out.shape[1]
        return BlockData(
            block=Block(start // SHARD, start, start + n),
            language=lang,
            layers=tuple(range(LAYERS)),
            sample_ids=[f"s{start + i}" for i in range(n)],
            activations=out,
            input_ids=np.ones((n, TOKENS), np.int32),
            token_role=np.tile(gemma_roles(TOKENS, IMAGE_TOKENS), (n, 1)),
            n_tokens=np.full(n, TOKENS, np.int32),
            errors=np.full(n, "", dtype=object),
        )


def _write(store: ActivationStore, blocks: _Blocks, n_blocks: int, threads: int) -> tuple[float, float]:
    """(seconds the writer spent, seconds in all) writing the first ``n_blocks`` blocks of each language."""
    buffers = [np.empty((LAYERS, SHARD, TOKENS, HIDDEN), np.float32) for _ in range(2)]
    t0 = time.perf_counter()
    with BlockWriter(store, precision="bf16", threads=threads) as writer:
        for i in range(n_blocks):
            for j, lang in enumerate(LANGS):
                buf = buffers[(2 * i + j) % 2]  # the writer holds at most one block: the other is free
                blocks.fill(buf)
                writer.submit(blocks.data(buf, i * SHARD, lang))
                if (2 * i + j) % 10 == 0:
                    print(f"  block {i + 1}/{n_blocks} {lang}: {writer.stats.bytes / 1e9:.1f} GB", flush=True)
    return writer.stats.seconds, time.perf_counter() - t0


def _files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _provider_ratio(store: ActivationStore, layer: int) -> dict[str, Any]:
    """Vectors/s of the provider streaming vs sampling in RAM (same data), interleaved rounds."""
    per_layer = store.layout.n_samples * len(LANGS) * TOKENS * HIDDEN * 4
    unit = SHARD * TOKENS * HIDDEN * 4  # one shard block of one language
    streamed = max(per_layer // 4, unit + BATCH * HIDDEN * 4 + 2 * unit)  # at least a block a round
    speeds: dict[str, list[float]] = {"streamed": [], "in RAM": []}
    loads = []
    for _ in range(PROVIDER_ROUNDS):
        for kind, budget in (("streamed", streamed), ("in RAM", 2 * per_layer)):
            # host memory only (device_memory 0): the layer resident on the device is bench_train's
            config = DataConfig(layer=layer, batch_size=BATCH, memory_budget=budget, device_memory="0")
            provider = StoreDataProvider(store, config)
            if kind == "streamed" and provider.summary.in_memory:
                raise RuntimeError(
                    f"a layer of {per_layer} B fits the budget {streamed} B: write more samples"
                )
            t0 = time.perf_counter()
            stream = provider.batches()
            next(stream)
            first = time.perf_counter() - t0
            if kind == "in RAM":
                loads.append(first)
            n = 60
            t0 = time.perf_counter()
            for _ in range(n):
                next(stream)
            speeds[kind].append(n * BATCH / (time.perf_counter() - t0))
            stream.close()
    return {
        "streamed": statistics.median(speeds["streamed"]),
        "in RAM": statistics.median(speeds["in RAM"]),
        "rounds": {k: ", ".join(f"{x / 1e3:.0f}k" for x in v) for k, v in speeds.items()},
        "load_s": min(loads),
        "layer_mb": per_layer / 1e6,
        "budget_mb": streamed / 1e6,
    }


def _writer_ratio(root: Path, blocks: _Blocks, preset: str) -> dict[str, list[float]]:
    """Seconds per round of one block (one language, all layers): the writer on 1 and 2 threads and the
    raw encode of the same bf16 chunks on as many threads, interleaved."""
    store = _create(root / f"ratio-{preset}.zarr", SHARD, preset)
    block = np.empty((LAYERS, SHARD, TOKENS, HIDDEN), np.float32)
    blocks.fill(block)
    round_to_bf16_(block)
    chunks = [c for layer in block for c in layer]
    encode = store.activation_codec.encode_chunk
    times: dict[str, list[float]] = {k: [] for k in ("writer 1", "encode 1", "writer 2", "encode 2")}
    for _ in range(RATIO_ROUNDS):
        for threads in (1, 2):
            shutil.rmtree(store.path / S.ACTIVATIONS / "c", ignore_errors=True)  # no file replaced
            data = blocks.data(block, 0, LANGS[0])
            data.bf16_exact = True
            t0 = time.perf_counter()
            with BlockWriter(store, precision="bf16", threads=threads) as writer:
                writer.submit(data)
            times[f"writer {threads}"].append(time.perf_counter() - t0)
            with ThreadPoolExecutor(threads) as pool:
                t0 = time.perf_counter()
                list(pool.map(encode, chunks))
                times[f"encode {threads}"].append(time.perf_counter() - t0)
    shutil.rmtree(store.path)
    return times


def _projected_files(root: Path, n: int) -> tuple[int, int]:
    """``sae-store du``'s projected files of a finished ``n``-sample store, before and after its
    ``features`` group (``sae-store encode``) is added: an empty store of that size, projected."""
    store = _create(root / "projection.zarr", n, DEFAULT_COMPRESSOR)
    before = store_usage(store).projected_files
    create_features_group(store, D_SAE, ["image", "text"])
    after = store_usage(store).projected_files
    shutil.rmtree(store.path)
    return before, after


def main() -> dict:
    out = Path(os.environ.get("SAE_BENCH_DIR", Path(__file__).resolve().parent.parent / "bench-output"))
    n = _n_samples()
    threads = available_cores()
    rng = np.random.default_rng(0)
    blocks = _Blocks(rng)
    root = out / "fullscale"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rows = []
    try:
        store = _create(root / "store.zarr", n, DEFAULT_COMPRESSOR)
        empty_files = _files(store.path)
        base = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
        print(
            f"writing {n} samples x {len(LANGS)} languages x {LAYERS} layers ({DEFAULT_COMPRESSOR})",
            flush=True,
        )
        busy, wall = _write(store, blocks, n // SHARD, threads)
        values = n * len(LANGS) * LAYERS * TOKENS * HIDDEN
        disk = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file()) - base
        files = _files(store.path)
        rows.append((DEFAULT_COMPRESSOR, n, values * 4 / 1e6 / busy, values * 4 / 1e6 / wall, disk / values))
        written_projection = store_usage(store).projected_files
        provider = _provider_ratio(store, layer=LAYERS // 2)
        print("writer / raw encode per preset", flush=True)
        ratios = {preset: _writer_ratio(root, blocks, preset) for preset in PRESETS}
        projected = _projected_files(root, FULL_SAMPLES)
        for preset in (p for p in PRESETS if p != DEFAULT_COMPRESSOR):
            other = _create(root / f"{preset}.zarr", OTHER_PRESET_BLOCKS * SHARD, preset)
            base_o = sum(p.stat().st_size for p in other.path.rglob("*") if p.is_file())
            busy_o, wall_o = _write(other, blocks, OTHER_PRESET_BLOCKS, threads)
            vals = OTHER_PRESET_BLOCKS * SHARD * len(LANGS) * LAYERS * TOKENS * HIDDEN
            disk_o = sum(p.stat().st_size for p in other.path.rglob("*") if p.is_file()) - base_o
            mb = vals * 4 / 1e6
            rows.append((preset, OTHER_PRESET_BLOCKS * SHARD, mb / busy_o, mb / wall_o, disk_o / vals))
            shutil.rmtree(other.path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bpv = rows[0][4]
    n_blocks = n // SHARD
    per_block = (files - empty_files) / n_blocks
    mb_block = LAYERS * SHARD * TOKENS * HIDDEN * 4 / 1e6
    lines = [
        f"{n} samples x {len(LANGS)} languages x {LAYERS} layers x {TOKENS} tokens x {HIDDEN} "
        f"(`SAE_BENCH_FULL_GB={os.environ.get('SAE_BENCH_FULL_GB', '2')}`), shards of {SHARD}, bf16, "
        f"written by `BlockWriter` on {threads} threads "
        f"(this machine's cores) from synthetic Gemma-like float32 blocks; page cache, local disk.",
        "",
        "| preset | samples | writer MB/s (float32, writer busy) | MB/s end to end (incl. making the data) "
        "| bytes/value |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {p} | {s} | {w:.0f} | {e:.0f} | {b:.3f} |" for p, s, w, e, b in rows),
        "",
        f"Store: {disk / 1e9:.1f} GB of activations, {files:,} files ({empty_files} when empty, "
        f"{per_block:.0f} per block of {SHARD} samples; `sae-store du` projected {written_projection:,}). "
        f"Projected to {FULL_SAMPLES} samples: "
        f"{bpv * FULL_SAMPLES * len(LANGS) * LAYERS * TOKENS * HIDDEN / 1e9:.0f} GB, "
        f"**{projected[0]:,} files, {projected[1]:,} with the `features` group** (`sae-store du`'s "
        f"projection of an empty {FULL_SAMPLES}-sample store, before and after `sae-store encode` adds "
        "it; schema v1 projected 34,777 before features, ~80,000 with them), and "
        f"{FULL_SAMPLES * len(LANGS) * LAYERS * TOKENS * HIDDEN * 4 / 1e6 / rows[0][2] / 3600:.1f} h of "
        f"writer time on {threads} cores.",
        "",
        f"**Writer / raw encode** per preset: one block ({LAYERS} layers x {SHARD} samples, "
        f"{mb_block:.0f} MB as float32) rounded to bf16 beforehand (extraction rounds on the model's "
        "device), written by `BlockWriter` (statistics, shard files and small arrays included) vs the "
        f"same chunks encoded on as many threads with no I/O; MB/s, median ({RATIO_ROUNDS} interleaved "
        "rounds, each listed):",
        "",
        "| preset | writer, 1 thread | raw encode, 1 thread | ratio | writer, 2 threads "
        "| raw encode, 2 threads | ratio |",
        "| --- | --- | --- | ---: | --- | --- | ---: |",
        *(
            f"| {p} | {_cell(mb_block, t['writer 1'])} | {_cell(mb_block, t['encode 1'])} "
            f"| {statistics.median(t['encode 1']) / statistics.median(t['writer 1']):.2f} "
            f"| {_cell(mb_block, t['writer 2'])} | {_cell(mb_block, t['encode 2'])} "
            f"| {statistics.median(t['encode 2']) / statistics.median(t['writer 2']):.2f} |"
            for p, t in ratios.items()
        ),
        "",
        f"Training provider on layer {LAYERS // 2} of this store ({provider['layer_mb']:.0f} MB as float32, "
        f"image + text tokens, split by special tokens as in Gemma 3's prompt, batches of {BATCH}, "
        f"{DataConfig(layer=0).read_threads} read threads (the "
        f"default), median of {PROVIDER_ROUNDS} interleaved rounds, each listed):",
        "",
        "| data provider | vectors/s | vs in RAM | rounds |",
        "| --- | ---: | ---: | --- |",
        f"| in RAM (loaded once in {provider['load_s']:.1f} s, sampled) | {provider['in RAM']:,.0f} "
        f"| 1.00x | {provider['rounds']['in RAM']} |",
        f"| streamed, budget {provider['budget_mb']:.0f} MB, prefetch | {provider['streamed']:,.0f} "
        f"| {provider['streamed'] / provider['in RAM']:.2f}x | {provider['rounds']['streamed']} |",
    ]
    writer_ratio = {
        p: {k: statistics.median(t[f"encode {k}"]) / statistics.median(t[f"writer {k}"]) for k in (1, 2)}
        for p, t in ratios.items()
    }
    return result(
        "Full-scale-shaped store (Gemma-3-4B shape)",
        lines,
        rows=rows,
        projected_files=projected,
        writer_ratio=writer_ratio,
        stream_vs_ram=provider["streamed"] / provider["in RAM"],
    )


if __name__ == "__main__":
    main()
