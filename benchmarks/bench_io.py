"""Store I/O at the codec's speed: codec presets, the parallel writer and the whole-shard readers.

1. Codec presets on Gemma-3-like activations (bf16-exact float32, heavy tails, a few huge channels):
   bytes/value, encode and decode MB/s per core (one thread) and on two threads.
2. Writing one block (4 layers x 16 samples x 278 x 2560, bf16 rounding + statistics + shard files):
   the writer on 1 and 2 threads against the raw encode of the same chunks on as many threads, and
   the former path (whole-layer rounding and statistics, then zarr's own region write).
3. Loading one layer of one language into RAM: zarr's per-sample reads on 4 threads (the training
   provider's former path) and zarr's whole-array read, against whole-shard decoding on 2 threads.
4. The ``zarrs`` codec pipeline for zarr-python (the ``bench`` extra) writing and reading that layer,
   against zarr-python's default pipeline and sae-store's own shard codec, and whether its bytes match.

Every comparison is measured in interleaved rounds in one run; the tables give the median and
each round.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from benchmarks.bench_store import synthetic_inputs
from benchmarks.run import result
from sae_store.extract.block import BlockData
from sae_store.extract.writer import BlockWriter, block_statistics
from sae_store.store import ActivationStore, Block, StoreConfig, create_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16
from sae_store.store.config import PRESETS, CodecSettings

LAYERS, SAMPLES, TOKENS, HIDDEN = 4, 16, 278, 2560
LOAD_SAMPLES = 96
ROUNDS = 5


def gemma_like(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 residual-stream-like values (not yet bf16-rounded): Student-t body whose scale varies
    per token, six channels ~300x larger, and a first token (BOS) ~50x larger, as in Gemma 3."""
    x = rng.standard_t(5, size=shape).astype(np.float32)
    x *= rng.lognormal(0.5, 0.4, size=(*shape[:-1], 1)).astype(np.float32)
    x[..., rng.choice(shape[-1], size=6, replace=False)] *= 300.0
    x[..., 0, :] *= 50.0
    return x


#: The codecs of the presets table: the presets and the ``fast`` preset's former setting.
CANDIDATES: dict[str, CodecSettings] = {**PRESETS, "fast before": CodecSettings("blosc-lz4", 5, "bit")}


def _store(path: Path, n: int, preset: str, layers: int = LAYERS) -> ActivationStore:
    """A store of ``n`` samples whose activations use ``preset`` (a name of ``CANDIDATES``)."""
    samples, info = synthetic_inputs(n, HIDDEN, {"en": TOKENS}, image_tokens=256)
    info = dataclasses.replace(info, n_layers=layers)
    codec, clevel, shuffle = CANDIDATES[preset]
    config = StoreConfig(samples_per_shard=SAMPLES, compressor=codec, clevel=clevel, shuffle=shuffle)
    return create_store(path, samples, info, config=config)


def _rounds(
    fns: dict[str, Callable[[], object]],
    rounds: int = ROUNDS,
    setup: dict[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each function per round, the functions interleaved within every round; ``setup[name]``
    (untimed) prepares the input of ``fns[name]`` just before each of its runs."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if setup and name in setup:
                setup[name]()
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def _cell(mb: float, seconds: list[float]) -> str:
    speeds = [mb / s for s in seconds]
    return f"{statistics.median(speeds):.0f} ({', '.join(f'{v:.0f}' for v in speeds)})"


def bench_presets(tmp: Path, block: np.ndarray) -> list[dict]:
    chunks = [c for layer in block for c in layer]
    mb = block.nbytes / 1e6
    rows, fns = [], {}
    pool = ThreadPoolExecutor(2)
    for preset in CANDIDATES:
        codec = _store(tmp / f"{preset.replace(' ', '-')}.zarr", SAMPLES, preset).activation_codec
        encoded = [codec.encode_chunk(c) for c in chunks]
        out = np.empty_like(chunks[0])
        rows.append({"preset": preset, "bpv": sum(len(e or b"") for e in encoded) / block.size})

        def decode(codec=codec, encoded=encoded, out=out) -> None:
            for e in encoded:
                codec.decode_bytes(e, out)

        fns[f"{preset} enc1"] = lambda codec=codec: [codec.encode_chunk(c) for c in chunks]
        fns[f"{preset} enc2"] = lambda codec=codec: list(pool.map(codec.encode_chunk, chunks))
        fns[f"{preset} dec1"] = decode
    times = _rounds(fns)
    pool.shutdown()
    for row in rows:
        for kind in ("enc1", "enc2", "dec1"):
            row[kind] = _cell(mb, times[f"{row['preset']} {kind}"])
            row[kind + "_median"] = statistics.median(mb / s for s in times[f"{row['preset']} {kind}"])
    return rows


def _block_data(values: np.ndarray) -> BlockData:
    return BlockData(
        block=Block(0, 0, SAMPLES),
        language="en",
        layers=tuple(range(LAYERS)),
        sample_ids=[f"s{i}" for i in range(SAMPLES)],
        activations=values.copy(),
        input_ids=np.ones((SAMPLES, TOKENS), np.int32),
        token_role=np.full((SAMPLES, TOKENS), 2, np.int8),
        n_tokens=np.full(SAMPLES, TOKENS, np.int32),
        errors=np.full(SAMPLES, "", dtype=object),
    )


def bench_writer(tmp: Path, raw: np.ndarray, preset: str, *, exact: bool) -> dict[str, list[float]]:
    """Seconds per round: writer on 1/2 threads, raw encode on 1/2 threads, raw encode plus the shard
    files on 2 threads (the least a writer must do), the former zarr path. ``exact``: the block
    arrives already rounded to bf16 (extraction rounds on the model's device)."""
    store = _store(tmp / f"writer-{preset}-{exact}.zarr", SAMPLES, preset)
    rounded = round_to_bf16(raw)
    chunks = [c for layer in rounded for c in layer]
    encode = store.activation_codec.encode_chunk
    pools = {t: ThreadPoolExecutor(t) for t in (1, 2)}
    ok, n_tok = np.ones(SAMPLES, bool), np.full(SAMPLES, TOKENS, np.int32)

    fresh: list[BlockData] = []  # each run rounds its block in place: a new copy, made untimed

    def copy() -> None:  # and a store without shard files, as in a real run (no file replaced)
        shutil.rmtree(store.path / S.ACTIVATIONS / "c", ignore_errors=True)
        fresh[:] = [_block_data(rounded if exact else raw)]
        fresh[0].bf16_exact = exact

    def writer(threads: int) -> None:
        with BlockWriter(store, precision="bf16", threads=threads) as w:
            w.submit(fresh.pop())

    def clear() -> None:
        shutil.rmtree(store.path / S.ACTIVATIONS / "c", ignore_errors=True)

    def encode_files() -> None:  # each layer's shard file written as soon as its chunks are encoded
        futures = [[pools[2].submit(encode, c) for c in layer] for layer in rounded]
        for k, layer in enumerate(futures):
            store.write_activation_shard(k, "en", 0, [f.result() for f in layer])

    def former() -> None:  # what the writer did before: per layer, then one zarr region write
        values = fresh.pop().activations
        for k in range(LAYERS):
            values[k] = values[k] if exact else round_to_bf16(values[k])
            block_statistics(values[k], n_tok, ok)
        store.write(S.ACTIVATIONS, values, start=0, layers=tuple(range(LAYERS)), language="en")

    times = _rounds(
        {
            "writer 1": lambda: writer(1),
            "encode 1": lambda: list(pools[1].map(encode, chunks)),
            "writer 2": lambda: writer(2),
            "encode 2": lambda: list(pools[2].map(encode, chunks)),
            "files 2": encode_files,
            "former": former,
        },
        setup={"writer 1": copy, "writer 2": copy, "files 2": clear, "former": copy},
    )
    for pool in pools.values():
        pool.shutdown()
    return times


def bench_load(tmp: Path, rng: np.random.Generator) -> dict[str, list[float]]:
    """Seconds per round to load one layer and language (LOAD_SAMPLES samples) into RAM."""
    store = _store(tmp / "load.zarr", LOAD_SAMPLES, "fast", layers=1)
    for start in range(0, LOAD_SAMPLES, SAMPLES):
        x = round_to_bf16(gemma_like(rng, (SAMPLES, TOKENS, HIDDEN)))
        store.write(S.ACTIVATIONS, x, start=start, layer=0, language="en")
    arr = store.array(S.ACTIVATIONS)
    out = np.empty((LOAD_SAMPLES, TOKENS, HIDDEN), np.float32)
    nd = default_buffer_prototype().nd_buffer
    four, two = ThreadPoolExecutor(4), ThreadPoolExecutor(2)

    def per_sample() -> None:
        list(
            four.map(
                lambda s: arr.get_basic_selection((0, 0, s), out=nd.from_numpy_array(out[s])),
                range(LOAD_SAMPLES),
            )
        )

    times = _rounds(
        {
            "zarr per-sample": per_sample,
            "zarr whole": lambda: np.asarray(arr[0, 0]),
            "shards": lambda: store.read_activations(0, "en", 0, LOAD_SAMPLES, out=out, pool=two),
        }
    )
    four.shutdown()
    two.shutdown()
    return times


PIPELINES = {"default": "zarr.core.codec_pipeline.BatchedCodecPipeline", "zarrs": "zarrs.ZarrsCodecPipeline"}


def bench_zarrs(tmp: Path, rng: np.random.Generator) -> tuple[dict[str, list[float]], bool] | None:
    """Seconds per round to write and to read one layer of one language (LOAD_SAMPLES samples, fast
    preset) through zarr with its default codec pipeline, with the ``zarrs`` pipeline (Rust, its own
    threads), and through :mod:`sae_store.store.shards` on 2 threads; and whether zarrs wrote the same
    bytes. None when the ``zarrs`` package is not installed."""
    try:
        import zarrs  # noqa: F401
    except ImportError:
        return None
    store = _store(tmp / "zarrs.zarr", LOAD_SAMPLES, "fast", layers=1)
    values = round_to_bf16(gemma_like(rng, (LOAD_SAMPLES, TOKENS, HIDDEN)))
    arrays = {}
    for name, path in PIPELINES.items():
        with zarr.config.set({"codec_pipeline.path": path}):
            arrays[name] = store.array(S.ACTIVATIONS, mode="r+")
    shards = store.path / S.ACTIVATIONS / "c"
    written = {}
    for name, arr in arrays.items():
        shutil.rmtree(shards, ignore_errors=True)
        arr[0, 0] = values
        written[name] = {p: p.read_bytes() for p in shards.rglob("*") if p.is_file()}
    same = written["default"] == written["zarrs"]
    codec, two = store.activation_codec, ThreadPoolExecutor(2)
    out = np.empty_like(values)

    def ours_write() -> None:
        for start in range(0, LOAD_SAMPLES, SAMPLES):
            chunks = list(two.map(codec.encode_chunk, values[start : start + SAMPLES]))
            store.write_activation_shard(0, "en", start, chunks)

    def clear() -> None:
        shutil.rmtree(shards, ignore_errors=True)

    fns: dict[str, Callable[[], object]] = {}
    for name, arr in arrays.items():
        fns[f"write {name}"] = lambda arr=arr: arr.__setitem__((0, 0), values)
    fns["write ours"] = ours_write
    for name, arr in arrays.items():
        fns[f"read {name}"] = lambda arr=arr: np.asarray(arr[0, 0])
    fns["read ours"] = lambda: store.read_activations(0, "en", 0, LOAD_SAMPLES, out=out, pool=two)
    times = _rounds(fns, setup={k: clear for k in fns if k.startswith("write")})
    two.shutdown()
    return times, same


def _zarrs_lines(result: tuple[dict[str, list[float]], bool] | None, mb: float) -> list[str]:
    if result is None:
        return ["The `zarrs` codec pipeline was not measured: the `zarrs` package is not installed."]
    times, same = result
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        f"**The `zarrs` codec pipeline** (Rust, its own threads) against zarr-python's default pipeline "
        f"and sae-store's shard codec on 2 threads, the same layer ({mb:.0f} MB, fast preset); zarrs "
        f"wrote {'the same bytes as' if same else 'OTHER bytes than'} zarr-python:",
        "",
        "| path | write MB/s | read MB/s |",
        "| --- | --- | --- |",
        *(
            f"| {label} | {_cell(mb, times['write ' + key])} | {_cell(mb, times['read ' + key])} |"
            for key, label in (
                ("default", "zarr-python, default pipeline (whole-array write / read)"),
                ("zarrs", "zarr-python with `zarrs.ZarrsCodecPipeline`"),
                ("ours", "sae-store shard codec, 2 threads (the writer's and readers' path)"),
            )
        ),
        "",
        f"zarrs vs default: write {med['write default'] / med['write zarrs']:.1f}x, read "
        f"{med['read default'] / med['read zarrs']:.1f}x; sae-store's path vs zarrs: write "
        f"{med['write zarrs'] / med['write ours']:.1f}x, read {med['read zarrs'] / med['read ours']:.1f}x.",
    ]


def main() -> dict:
    rng = np.random.default_rng(0)
    raw = gemma_like(rng, (LAYERS, SAMPLES, TOKENS, HIDDEN))
    block = round_to_bf16(raw)
    mb = raw.nbytes / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="bench-io-"))
    try:
        presets = bench_presets(tmp, block)
        writers = {
            (p, exact): bench_writer(tmp, raw, p, exact=exact)
            for p, exact in (("fast", True), ("fast", False), ("compact", False))
        }
        load = bench_load(tmp, rng)
        pipelines = bench_zarrs(tmp, rng)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    compact = next(r for r in presets if r["preset"] == "compact")
    lines = [
        f"Gemma-3-like block: {LAYERS} layers x {SAMPLES} samples x {TOKENS} tokens x {HIDDEN} "
        f"({mb:.0f} MB as float32; Student-t body with per-token scale, 6 channels x300, BOS x50, "
        f"rounded to bf16). MB/s of float32: median ({ROUNDS} interleaved rounds).",
        "",
        "**Codec presets** (one sample chunk per encode/decode, as stored):",
        "",
        "| preset | codec | bytes/value | encode MB/s, 1 thread | encode, 2 threads | decode, 1 thread "
        "| encode vs compact | decode vs compact |",
        "| --- | --- | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for r in presets:
        codec, level, shuffle = CANDIDATES[r["preset"]]
        lines.append(
            f"| {r['preset']} | {codec} {level}, {shuffle} shuffle | {r['bpv']:.3f} | {r['enc1']} "
            f"| {r['enc2']} | {r['dec1']} | {r['enc1_median'] / compact['enc1_median']:.1f}x "
            f"| {r['dec1_median'] / compact['dec1_median']:.1f}x |"
        )
    lines += [
        "",
        "`fast before`: the `fast` preset's setting until bit shuffle's decode speed was measured here "
        "(numcodecs' Blosc build un-shuffles bits with SSE2 only): byte shuffle decodes about twice as "
        "fast for 7-10 % more bytes, and training streams what was written once many times.",
    ]
    lines += [
        "",
        "**Writer vs raw encode** (statistics, shard files and the small per-block arrays included, and "
        "bf16 rounding where the writer does it; extraction rounds on the model's device, so the first "
        "row is the real path; raw encode: the same bf16 chunks through the same codec on as many "
        "threads, no I/O; raw encode + files: the same encode on 2 threads with each layer's shard file "
        "written as soon as its chunks are encoded, no statistics or small arrays, the least a writer "
        "must do):",
        "",
        "| preset | writer, 1 thread | raw encode, 1 thread | ratio | writer, 2 threads | raw encode, 2 "
        "threads | ratio | raw encode + files, 2 threads | writer vs that | former path (zarr region "
        "write) | writer (2 threads) vs former |",
        "| --- | --- | --- | ---: | --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    ratios = {}
    for (preset, exact), t in writers.items():
        med = {k: statistics.median(v) for k, v in t.items()}
        key = f"{preset}{', rounded on the device' if exact else ', rounded by the writer'}"
        ratios[key] = {n: med[f"encode {n}"] / med[f"writer {n}"] for n in (1, 2)}
        lines.append(
            f"| {key} | {_cell(mb, t['writer 1'])} | {_cell(mb, t['encode 1'])} | {ratios[key][1]:.2f} "
            f"| {_cell(mb, t['writer 2'])} | {_cell(mb, t['encode 2'])} | {ratios[key][2]:.2f} "
            f"| {_cell(mb, t['files 2'])} | {med['files 2'] / med['writer 2']:.2f} "
            f"| {_cell(mb, t['former'])} | {med['former'] / med['writer 2']:.2f}x |"
        )
    load_mb = LOAD_SAMPLES * TOKENS * HIDDEN * 4 / 1e6
    lmed = {k: statistics.median(v) for k, v in load.items()}
    lines += [
        "",
        f"**Loading one layer into RAM** ({LOAD_SAMPLES} samples of one language, {load_mb:.0f} MB, fast "
        "preset, page cache):",
        "",
        "| path | MB/s | new vs this |",
        "| --- | --- | ---: |",
        *(
            f"| {label} | {_cell(load_mb, load[key])} | {lmed[key] / lmed['shards']:.1f}x |"
            for key, label in (
                ("zarr per-sample", "zarr per-sample reads on 4 threads (the provider's former path)"),
                ("zarr whole", "zarr whole-array read"),
                ("shards", "whole-shard decode on 2 threads (`read_activations`, new)"),
            )
        ),
        "",
        *_zarrs_lines(pipelines, load_mb),
    ]
    return result(
        "Store I/O: codec presets, parallel writer, whole-shard reads",
        lines,
        presets=presets,
        writer_ratio=ratios,
        load_speedup=lmed["zarr per-sample"] / lmed["shards"],
        zarrs=pipelines[0] if pipelines else None,
    )


if __name__ == "__main__":
    main()
