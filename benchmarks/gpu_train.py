"""GPU SAE training fed from the store: tokens/s with batches streamed from the store vs the same
data already in GPU memory, and FVU with and without bfloat16 autocast.

A synthetic store of one layer (Gemma-3-4B width 2560 by default) whose token vectors are sparse
sums of a random dictionary, bf16-rounded as extraction writes them. For each d_sae (16k, 32k, 64k)
and precision (float32, bf16 autocast), two trainers take turns in blocks of steps: one draws its
batches from ``StoreDataProvider`` (memory budget a quarter of the data, so it streams through its
shuffle buffers with prefetch), the other from a tensor of the same normalised vectors resident on
the GPU. Every block's ratio and the median are printed; FVU is measured on held-out vectors.

    python benchmarks/gpu_train.py                  # on a CUDA node (about 5 minutes on one H100/H200)
    python benchmarks/gpu_train.py --tiny           # a small CPU run that exercises every path
    python benchmarks/gpu_train.py --json out.json  # also write the numbers
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_store import synthetic_inputs
from sae_store.roles import TokenRole
from sae_store.store import StoreConfig, create_store, open_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16
from sae_store.train.config import DataConfig, SaeConfig, TrainerConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Trainer


@dataclass(frozen=True)
class Setup:
    hidden: int
    n_samples: int
    tokens: int
    widths: tuple[int, ...]
    batch: int
    blocks: int
    block_steps: int
    device: str


FULL = Setup(2560, 256, 280, (16_384, 32_768, 65_536), 4096, 6, 10, "cuda")
TINY = Setup(64, 16, 40, (256, 512), 256, 2, 3, "cpu")


def make_store(path: Path, s: Setup, seed: int = 0) -> tuple[Path, np.ndarray]:
    """One layer, one language, ``tokens`` image+text tokens per sample: sparse sums of a dictionary
    of 4 x hidden unit atoms (returned), 32 active per token, plus four large constant outlier
    dimensions as in real residual streams; bf16-rounded as extraction writes them."""
    samples, info = synthetic_inputs(s.n_samples, s.hidden, {"en": s.tokens + 2}, image_tokens=s.tokens // 2)
    shard = 8
    store = create_store(path, samples, info, config=StoreConfig(samples_per_shard=shard))
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((4 * s.hidden, s.hidden)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    T = store.layout.max_tokens
    roles = np.full(T, int(TokenRole.PAD), dtype=np.int8)
    roles[1 : s.tokens + 1] = int(TokenRole.TEXT)
    roles[1 : 1 + s.tokens // 2] = int(TokenRole.IMAGE)
    roles[0] = roles[s.tokens + 1] = int(TokenRole.SPECIAL)
    for start in range(0, s.n_samples, shard):
        codes = (rng.random((shard * T, len(atoms))) < 32 / len(atoms)) * rng.uniform(
            0.5, 2.0, (1, len(atoms))
        )
        x = (codes.astype(np.float32) @ atoms).reshape(shard, T, s.hidden)
        x[..., :4] += 40.0
        x[:, s.tokens + 2 :] = np.nan
        store.write(S.ACTIVATIONS, round_to_bf16(x), start=start, layer=0, language="en")
        store.write(S.TOKEN_ROLE, np.tile(roles, (shard, 1)), start=start, language="en")
        store.write(S.COMPLETE, np.ones(shard, bool), start=start, layer=0, language="en")
    return store.path, atoms


def _resident(provider: StoreDataProvider, scale: float, batch: int, device: str) -> Iterator[torch.Tensor]:
    """As many normalised training vectors as the layer has, moved once to ``device``; random batches."""
    stream = provider.batches(scale=scale)
    n_batches = -(-provider.summary.train_tokens // batch)
    data = torch.cat([next(stream) for _ in range(n_batches)]).to(device)
    stream.close()
    gen = torch.Generator(device=device).manual_seed(0)
    while True:
        yield data[torch.randint(len(data), (batch,), device=device, generator=gen)]


def _trainer(s: Setup, d_sae: int, steps: int, bf16: bool) -> Trainer:
    sae = build_sae(SaeConfig(architecture="topk", d_in=s.hidden, d_sae=d_sae, k=64), seed=0)
    config = TrainerConfig(steps=steps, lr_warmup_steps=min(100, steps // 10), log_every=steps,
                           checkpoint_every=0, device=s.device, autocast_bf16=bf16)  # fmt: skip
    return Trainer(sae, config)


def _run_block(trainer: Trainer, batches: Iterator[torch.Tensor], steps: int) -> float:
    """Tokens/s of ``steps`` steps, data wait included (the device is synchronised at the end)."""
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        x = next(batches)
        trainer.train_step(x)
        n += len(x)
    sync()
    return n / (time.perf_counter() - t0)


def compare(s: Setup, store_path: Path) -> list[dict[str, Any]]:
    store = open_store(store_path)
    everything = StoreDataProvider(store, DataConfig(layer=0, batch_size=s.batch, memory_budget=8 * 1024**3))
    data_bytes = everything.summary.train_tokens * s.hidden * 4
    streamed = StoreDataProvider(
        store, DataConfig(layer=0, batch_size=s.batch, memory_budget=max(data_bytes // 4, 1))
    )
    scale = streamed.estimate_scale()
    rows = []
    steps = s.blocks * s.block_steps
    for d_sae in s.widths:
        for bf16 in (False, True):
            stream = streamed.batches(scale=scale)
            resident = _resident(everything, scale, s.batch, s.device)
            a, b = _trainer(s, d_sae, steps, bf16), _trainer(s, d_sae, steps, bf16)
            _run_block(a, stream, 1), _run_block(b, resident, 1)  # warm-up (allocations, kernels)
            ratios = []
            for block in range(s.blocks):
                pair = [(a, stream), (b, resident)]
                order = pair if block % 2 == 0 else pair[::-1]
                rate = {id(t): _run_block(t, it, s.block_steps) for t, it in order}
                ratios.append(rate[id(a)] / rate[id(b)])
            stream.close()
            fvu = a.evaluate(everything.validation_batches(scale=scale)).metrics.get("fvu", float("nan"))
            rows.append({"d_sae": d_sae, "bf16": bf16, "ratios": ratios, "median": statistics.median(ratios),
                         "streamed_tokens_per_s": rate[id(a)], "resident_tokens_per_s": rate[id(b)],
                         "fvu": fvu})  # fmt: skip
            median = statistics.median(ratios)
            print(f"d_sae {d_sae} bf16={bf16}: streamed/resident {median:.2f}x, FVU {fvu:.3f}")
    return rows


def markdown(rows: list[dict[str, Any]], s: Setup, device_name: str) -> str:
    lines = [
        f"{device_name}; d_in {s.hidden}, TopK k 64, batches of {s.batch}, {s.blocks} blocks of "
        f"{s.block_steps} steps per trainer, alternating; streamed = StoreDataProvider with a memory "
        "budget of a quarter of the data.",
        "",
        "| d_sae | precision | streamed tokens/s | resident tokens/s | streamed / resident per block "
        "| median | FVU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        per = ", ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"| {r['d_sae']:,} | {'bf16 autocast' if r['bf16'] else 'float32'} | "
            f"{r['streamed_tokens_per_s']:,.0f} | {r['resident_tokens_per_s']:,.0f} | {per} | "
            f"**{r['median']:.2f}x** | {r['fvu']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="small sizes on the CPU (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    s = TINY if args.tiny else FULL
    if s.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU node, or pass --tiny for a CPU smoke run")
    name = torch.cuda.get_device_name() if s.device == "cuda" else "CPU (--tiny)"
    tmp = Path(tempfile.mkdtemp(prefix="gpu-train-"))
    try:
        rows = compare(s, make_store(tmp / "store.zarr", s)[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(rows, s, name)
    print(text)
    result = {"title": "GPU training: streamed from the store vs resident in GPU memory", "markdown": text,
              "rows": rows}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
