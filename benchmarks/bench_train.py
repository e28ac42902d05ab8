"""SAE training data path: provider throughput streaming from the store vs sampling in RAM, peak memory
under a budget below the data size, and training steps split into data wait vs compute.

A synthetic store of Gemma-3-4B width (2560) with one layer, two languages and bf16-rounded values;
the provider reads whole shard blocks into a shuffle buffer (with a prefetch thread) when the data
does not fit its memory budget, and loads it once and samples in RAM when it does.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from benchmarks.bench_store import gemma_roles, synthetic_inputs
from benchmarks.run import result
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
    kept = {}
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


def _peak_rss(path: str, budget: int, n_batches: int, queue: Any) -> None:
    """In a fresh process: RSS above the post-import baseline while streaming (sampled every 5 ms)."""
    torch.set_num_threads(1)
    proc = psutil.Process()
    provider = StoreDataProvider(
        open_store(path), DataConfig(layer=0, batch_size=BATCH, memory_budget=budget)
    )
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


def _rss_in_subprocess(path: Path, budget: int, n_batches: int) -> tuple[int, int, bool]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_peak_rss, args=(str(path), budget, n_batches, queue))
    p.start()
    result = queue.get(timeout=600)
    p.join()
    return result  # type: ignore[no-any-return]


def _train_steps(
    provider: StoreDataProvider, steps: int, expansion: int, device: str = "cpu"
) -> dict[str, float]:
    """A TopK SAE trained from ``provider``; the last record averages all steps but the first (warm-up)."""
    sae = build_sae(SaeConfig(architecture="topk", d_in=HIDDEN, expansion=expansion, k=64), seed=0)
    trainer = Trainer(sae, TrainerConfig(steps=steps, lr=3e-4, log_every=1, lr_warmup_steps=1, device=device))
    records: list[dict[str, Any]] = []
    stream = provider.batches(scale=provider.estimate_scale())
    trainer.fit(stream, on_log=records.append, progress=False)
    stream.close()
    rest = records[1:]
    wait, compute = (float(np.mean([r[k] for r in rest])) for k in ("data_wait_s", "compute_s"))
    return {"steps_per_s": 1 / (wait + compute), "data_wait_s": wait, "compute_s": compute}


def _gpu_lines(store_path: Path, budget: int) -> tuple[list[str], dict[str, Any]]:
    """Steps of a Gemma-Scope-sized SAE on the GPU, fed by the streamed and by the in-RAM provider."""
    store = open_store(store_path)
    out: dict[str, Any] = {}
    lines = [
        "",
        f"On the GPU ({torch.cuda.get_device_name()}), d_sae {8 * HIDDEN}, batches of {BATCH}:",
        "",
        "| provider | steps/s | data wait per step | compute per step |",
        "| --- | --- | --- | --- |",
    ]
    for label, memory in (("streamed (budget a quarter of the data)", budget), ("in RAM", 8 * 1024**3)):
        provider = StoreDataProvider(store, DataConfig(layer=0, batch_size=BATCH, memory_budget=memory))
        r = _train_steps(provider, steps=25, expansion=8, device="cuda")
        out[label] = r
        lines.append(
            f"| {label} | {r['steps_per_s']:.1f} | {r['data_wait_s'] * 1e3:.1f} ms | "
            f"{r['compute_s'] * 1e3:.1f} ms |"
        )
    return lines, out


def main() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        path = _make_store(tmp / "store.zarr")
        store = open_store(path)
        big = DataConfig(layer=0, batch_size=BATCH, memory_budget=8 * 1024**3)
        in_ram = StoreDataProvider(store, big)
        data_bytes = in_ram.summary.train_tokens * HIDDEN * 4
        budget = data_bytes // 4
        small = DataConfig(layer=0, batch_size=BATCH, memory_budget=budget)
        streaming = StoreDataProvider(store, small)
        no_prefetch = StoreDataProvider(
            store, DataConfig(layer=0, batch_size=BATCH, memory_budget=budget, prefetch=False)
        )
        rates, first = _throughput({"ram": in_ram, "stream": streaming, "plain": no_prefetch})
        rss_stream, per_round, _ = _rss_in_subprocess(path, budget, N_BATCHES)
        rss_ram, _, _ = _rss_in_subprocess(path, 8 * 1024**3, 10)
        for_training = StoreDataProvider(store, DataConfig(layer=0, batch_size=1024, memory_budget=budget))
        train = _train_steps(for_training, steps=4, expansion=2)
        gpu_lines, gpu = _gpu_lines(path, budget) if torch.cuda.is_available() else ([], {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = 1024**2
    s = streaming.summary
    med = {k: statistics.median(v) for k, v in rates.items()}
    ram_rate, stream_rate, plain_rate = med["ram"], med["stream"], med["plain"]
    each = {k: ", ".join(f"{x / 1e3:.0f}k" for x in v) for k, v in rates.items()}
    rows = [
        ("in RAM (loaded once, sampled)", "ram", f"load {first['ram']:.1f} s"),
        (
            f"streamed, shuffle buffer of {per_round} blocks + prefetch",
            "stream",
            f"first batch {first['stream']:.1f} s",
        ),
        ("streamed, no prefetch", "plain", ""),
    ]
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
        f"loading everything in RAM: {rss_ram / mb:.0f} MiB.",
        "",
        f"Training a TopK SAE (d_in {HIDDEN}, d_sae {2 * HIDDEN}, k 64, batches of 1024, CPU) from the "
        f"streamed provider: {train['steps_per_s']:.2f} steps/s; per step {train['compute_s'] * 1e3:.0f} ms "
        "compute vs "
        f"{train['data_wait_s'] * 1e3:.1f} ms waiting for data "
        f"({train['data_wait_s'] / (train['data_wait_s'] + train['compute_s']):.1%} of the step).",
        *gpu_lines,
    ]
    return result(
        "SAE training: data provider throughput, memory and step time",
        lines,
        vectors_per_s={"in_ram": ram_rate, "streamed": stream_rate, "streamed_no_prefetch": plain_rate},
        rounds=rates,
        stream_vs_ram=stream_rate / ram_rate,
        peak_rss_bytes={"streamed": rss_stream, "in_ram": rss_ram, "budget": budget, "data": data_bytes},
        train_step=train,
        gpu_train_step=gpu,
    )


if __name__ == "__main__":
    main()
