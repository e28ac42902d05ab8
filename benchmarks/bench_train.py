"""SAE training data path: provider throughput with the layer resident on the device (here the host),
sampled in RAM and streamed from the store; peak memory under a budget below the data size; steps
without host reads vs steps that read the device every step; several SAEs from one data pass vs one
pass each.

A synthetic store of Gemma-3-4B width (2560) with one layer, two languages and bf16-rounded values;
the provider keeps the layer on the training device when it fits ``device_memory``, else reads whole
shard blocks into a shuffle buffer (with a prefetch thread) when the data does not fit its memory
budget, and loads it once and samples in RAM when it does.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from benchmarks.bench_store import gemma_roles, synthetic_inputs
from benchmarks.run import result
from benchmarks.train_timing import pass_vs_separate, sync_ratio
from sae_store.store import StoreConfig, create_store, open_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16
from sae_store.train.config import DataConfig, SaeConfig, TrainerConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Trainer

N_SAMPLES, SHARD, HIDDEN, IMAGE_TOKENS = 128, 8, 2560, 256
TOKENS = {"en": 278, "ar": 284}
BATCH = 4096
N_BATCHES = 40
ROUNDS = 5
SYNC_BLOCKS, SYNC_STEPS = 4, 3
PASS_KS, PASS_BATCH, PASS_STEPS, PASS_ROUNDS = (16, 32, 64), 1024, 6, 2


def _make_store(path: Path) -> Path:
    samples, info = synthetic_inputs(N_SAMPLES, HIDDEN, TOKENS, image_tokens=IMAGE_TOKENS)
    store = create_store(path, samples, info, config=StoreConfig(samples_per_shard=SHARD))
    rng = np.random.default_rng(0)
    T = store.layout.max_tokens
    outliers = rng.choice(HIDDEN, size=6, replace=False)
    for lang, n_tok in TOKENS.items():
        roles = gemma_roles(n_tok, IMAGE_TOKENS, T)
        for start in range(0, N_SAMPLES, SHARD):
            x = rng.standard_normal((SHARD, T, HIDDEN), dtype=np.float32)
            x[..., outliers] *= 30.0
            x[:, n_tok:] = np.nan
            store.write(S.ACTIVATIONS, round_to_bf16(x), start=start, layer=0, language=lang)
            store.write(S.TOKEN_ROLE, np.tile(roles, (SHARD, 1)), start=start, language=lang)
            store.write(S.NONFINITE, np.zeros(SHARD, np.int32), start=start, layer=0, language=lang)
            store.write(S.COMPLETE, np.ones(SHARD, bool), start=start, layer=0, language=lang)
    return store.path  # with the writer's NaN/inf counts (0): the provider trusts them, as on a real store


def _throughput(providers: dict[str, StoreDataProvider]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Vectors/s of each provider per round (``N_BATCHES`` batches after its first one), the providers
    interleaved within each round, and each one's seconds to its first batch (the in-RAM one loads
    once and is kept across rounds)."""
    rates: dict[str, list[float]] = {k: [] for k in providers}
    first: dict[str, float] = {}
    kept: dict[str, Any] = {}
    for _ in range(ROUNDS):
        for name, provider in providers.items():
            t0 = time.perf_counter()
            stream = kept.get(name) or provider.batches()
            if name not in kept:
                next(stream)
            first.setdefault(name, time.perf_counter() - t0)
            if provider.summary.in_memory:
                kept[name] = stream
            t1 = time.perf_counter()
            for _ in range(N_BATCHES):
                next(stream)
            rates[name].append(N_BATCHES * BATCH / (time.perf_counter() - t1))
            if name not in kept:
                stream.close()
    return rates, first


def _peak_rss(path: str, budget: int, device_memory: str, n_batches: int, queue: Any) -> None:
    """In a fresh process: RSS above the post-import baseline while drawing batches (sampled every 5 ms)."""
    torch.set_num_threads(1)
    proc = psutil.Process()
    config = DataConfig(layer=0, batch_size=BATCH, memory_budget=budget, device_memory=device_memory)
    provider = StoreDataProvider(open_store(path), config)
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stream = provider.batches()
    for _ in range(n_batches):
        next(stream)
    stream.close()
    done.set()
    watcher.join()
    queue.put((peak[0] - base, provider.summary.units_per_round, provider.summary.in_memory))


def _rss_in_subprocess(path: Path, budget: int, device_memory: str, n_batches: int) -> tuple[int, int, bool]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_peak_rss, args=(str(path), budget, device_memory, n_batches, queue))
    p.start()
    result = queue.get(timeout=600)
    p.join()
    return result


def _sae(expansion: int = 1, k: int = 64) -> SaeConfig:
    return SaeConfig(architecture="topk", d_in=HIDDEN, expansion=expansion, k=k)


def main() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        path = _make_store(tmp / "store.zarr")
        store = open_store(path)
        resident = StoreDataProvider(store, DataConfig(layer=0, batch_size=BATCH))
        big = DataConfig(layer=0, batch_size=BATCH, memory_budget=8 * 1024**3, device_memory="0")
        in_ram = StoreDataProvider(store, big)
        data_bytes = in_ram.summary.train_tokens * HIDDEN * 4
        budget = data_bytes // 4
        small = DataConfig(layer=0, batch_size=BATCH, memory_budget=budget, device_memory="0")
        streaming = StoreDataProvider(store, small)
        no_prefetch = StoreDataProvider(store, replace(small, prefetch=False))
        providers = {"resident": resident, "ram": in_ram, "stream": streaming, "plain": no_prefetch}
        rates, first = _throughput(providers)
        rss_stream, per_round, _ = _rss_in_subprocess(path, budget, "0", N_BATCHES)
        rss_resident, _, _ = _rss_in_subprocess(path, budget, "50%", 10)
        scale = streaming.estimate_scale()
        trainer = TrainerConfig(steps=10**6, lr=3e-4, lr_warmup_steps=1, log_every=10**6, device="cpu")
        sync = sync_ratio(lambda: Trainer(build_sae(_sae(2), seed=0), trainer),
                          resident.batches(scale=scale), blocks=SYNC_BLOCKS, steps=SYNC_STEPS)  # fmt: skip
        small_batches = StoreDataProvider(store, replace(small, batch_size=PASS_BATCH))
        sweep = [_sae(k=k) for k in PASS_KS]
        multi = pass_vs_separate(small_batches, sweep, replace(trainer, steps=PASS_STEPS, log_every=50),
                                 scale=scale, rounds=PASS_ROUNDS)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = 1024**2
    s = streaming.summary
    med = {k: statistics.median(v) for k, v in rates.items()}
    ram_rate = med["ram"]
    each = {k: ", ".join(f"{x / 1e3:.0f}k" for x in v) for k, v in rates.items()}
    held = str(resident._dtype).removeprefix("torch.")  # bf16 on a GPU, float32 (the same values) on a CPU
    rows = [
        (f"resident ({resident.summary.device}, {held}, drawn there)", "resident",
         f"load {first['resident']:.1f} s"),
        ("in RAM (loaded once, sampled)", "ram", f"load {first['ram']:.1f} s"),
        (f"streamed, shuffle buffer of {per_round} blocks + prefetch", "stream",
         f"first batch {first['stream']:.1f} s"),
        ("streamed, no prefetch", "plain", ""),
    ]  # fmt: skip
    m = multi["median"]
    lines = [
        f"One layer, 2 languages x {N_SAMPLES} samples x ~280 tokens x {HIDDEN} (image+text tokens, "
        "split by special tokens as in Gemma 3's prompt: "
        f"{s.train_tokens} training vectors, {data_bytes / mb:.0f} MiB as float32), shards of {SHARD} "
        f"samples, bf16-rounded values, default codec preset (fast); batches of {BATCH} vectors; "
        f"{streaming.config.read_threads} read threads (the default); vectors/s: median of {ROUNDS} "
        f"interleaved rounds of {N_BATCHES} batches (each round listed).",
        "",
        "| data provider | vectors/s | vs in RAM | rounds | |",
        "| --- | ---: | ---: | --- | --- |",
        *[
            f"| {label} | {med[k]:,.0f} | {med[k] / ram_rate:.2f}x | {each[k]} | {note} |"
            for label, k, note in rows
        ],
        "",
        f"Peak memory above baseline while streaming with a budget of {budget / mb:.0f} MiB (a quarter of "
        f"the data): **{rss_stream / mb:.0f} MiB** ({'within' if rss_stream <= budget else 'OVER'} the "
        "budget, which counts two batches, the read threads' one-sample buffers and two shuffle buffers); "
        f"the layer resident ({held}): {rss_resident / mb:.0f} MiB.",
        "",
        f"Steps without host reads vs steps reading six values and synchronising every step (as the trainer "
        f"did before): TopK, d_in {HIDDEN}, d_sae {2 * HIDDEN}, k 64, batches of {BATCH} from the resident "
        f"provider, CPU; {SYNC_BLOCKS} interleaved blocks of {SYNC_STEPS} steps, the same batches: tokens/s "
        f"ratio per block {', '.join(f'{r:.2f}' for r in sync['ratios'])}, median **{sync['median']:.2f}x** "
        "(on a CPU a read waits for nothing; on a GPU it waits for the queued work: `gpu_train.py`).",
        "",
        f"{len(PASS_KS)} TopK SAEs (k {', '.join(map(str, PASS_KS))}; d_in = d_sae = {HIDDEN}) for "
        f"{PASS_STEPS} steps of {PASS_BATCH} vectors from the streamed provider, one pass vs one pass each "
        f"(median of {PASS_ROUNDS} interleaved rounds): **{m['pass']['seconds']:.1f} s vs "
        f"{m['separate']['seconds']:.1f} s** ({m['separate']['seconds'] / m['pass']['seconds']:.2f}x); "
        f"waiting for data, per SAE: {m['pass']['data_s_per_sae']:.2f} s vs "
        f"{m['separate']['data_s_per_sae']:.2f} s "
        f"({m['pass']['data_s_per_sae'] / max(m['separate']['data_s_per_sae'], 1e-9):.2f}x).",
    ]
    return result(
        "SAE training: data provider throughput, memory, host reads and shared passes",
        lines,
        vectors_per_s=med,
        rounds=rates,
        stream_vs_ram=med["stream"] / ram_rate,
        resident_vs_ram=med["resident"] / ram_rate,
        peak_rss_bytes={
            "streamed": rss_stream,
            "resident": rss_resident,
            "budget": budget,
            "data": data_bytes,
        },
        sync=sync,
        multi_sae=multi,
    )


if __name__ == "__main__":
    main()
