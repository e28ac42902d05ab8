"""Bytes per value and write throughput of the store's default encoding vs .npy and torch.save.

Synthetic residual-stream-like activations of Gemma-3-4B width: a heavy-tailed Gaussian body, a few
huge outlier channels, values rounded to bf16 and held as float32 (what extraction stores).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.run import result
from sae_store.roles import TokenRole
from sae_store.store import ModelInfo, StoreConfig, create_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16

N_SAMPLES, TOKENS, HIDDEN, SHARD = 32, 278, 2560, 16
FULL_SCALE_VALUES = 2000 * 2 * 34 * 278 * 2560


def synthetic_activations(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_t(5, size=(n, TOKENS, HIDDEN)).astype(np.float32) * 2.0
    outliers = rng.choice(HIDDEN, size=6, replace=False)
    x[..., outliers] *= 300.0  # a few massive channels, as in Gemma's residual stream
    return round_to_bf16(x)


def synthetic_inputs(
    n_samples: int,
    hidden: int,
    tokens_per_language: dict[str, int],
    *,
    image_tokens: int,
    n_layers: int = 1,
    gender: str | Sequence[str] = "male",
) -> tuple[pd.DataFrame, ModelInfo]:
    """A samples table and a ModelInfo (one layer unless ``n_layers``) for synthetic benchmark stores
    (no model behind them); ``gender`` is every sample's label, or one label per sample."""
    samples = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n_samples)],
            "image": "x.png",
            "gender": gender,
            "en_caption": "",
            "ar_caption": "",
        }
    )
    info = ModelInfo(
        identity={"name_or_path": "synthetic"},
        n_layers=n_layers,
        hidden_size=hidden,
        prompts={lang: lang for lang in tokens_per_language},
        tokens_per_language=tokens_per_language,
        image_tokens=image_tokens,
    )
    return samples, info


def gemma_roles(n_tokens: int, image_tokens: int, max_tokens: int | None = None) -> np.ndarray:
    """Token roles laid out as in Gemma 3's chat prompt, padded to ``max_tokens``: <bos>
    <start_of_turn> user \\n \\n\\n <start_of_image> image tokens <end_of_image> \\n\\n prompt text
    <end_of_turn> \\n <start_of_turn> model \\n; the special tokens split image from text."""
    roles = np.full(max_tokens or n_tokens, int(TokenRole.PAD), np.int8)
    roles[:n_tokens] = int(TokenRole.TEXT)
    first = 6
    roles[first : first + image_tokens] = int(TokenRole.IMAGE)
    for i in (0, 1, first - 1, first + image_tokens, n_tokens - 6, n_tokens - 4):
        roles[i] = int(TokenRole.SPECIAL)
    return roles


def _dir_bytes(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def _time_write(fn, path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, _dir_bytes(path)


def main() -> dict:
    rng = np.random.default_rng(0)
    values = synthetic_activations(rng, N_SAMPLES)
    mb = values.nbytes / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    rows = []
    try:
        samples, info = synthetic_inputs(N_SAMPLES, HIDDEN, {"en": TOKENS}, image_tokens=256)
        for label, config in [
            ("store default (Blosc zstd 3, byte shuffle)", StoreConfig(samples_per_shard=SHARD)),
            ("store, Blosc lz4", StoreConfig(samples_per_shard=SHARD, compressor="blosc-lz4")),
            ("store, uncompressed", StoreConfig(samples_per_shard=SHARD, compressor="none")),
        ]:
            store = create_store(tmp / f"{label[:12]}{len(rows)}.zarr", samples, info, config=config)
            base = _dir_bytes(store.path)

            def write(store=store) -> None:
                for start in range(0, N_SAMPLES, SHARD):
                    store.write(
                        S.ACTIVATIONS, values[start : start + SHARD], start=start, layer=0, language="en"
                    )

            seconds, size = _time_write(write, store.path)
            rows.append((label, (size - base) / values.size, mb / seconds))
        npy = tmp / "acts.npy"
        seconds, size = _time_write(lambda: np.save(npy, values), npy)
        rows.append(("raw float32 .npy", size / values.size, mb / seconds))
        pt = tmp / "acts.pt"
        tensor = torch.from_numpy(values)
        seconds, size = _time_write(lambda: torch.save({"activations": tensor}, pt), pt)
        rows.append(("torch.save float32 (original pipeline)", size / values.size, mb / seconds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    default_bpv, default_speed = rows[0][1], rows[0][2]
    torch_bpv, torch_speed = rows[-1][1], rows[-1][2]
    lines = [
        f"{N_SAMPLES} samples x {TOKENS} tokens x {HIDDEN} hidden ({mb:.0f} MB as float32), "
        f"shards of {SHARD} samples, written to local disk (page cache).",
        "",
        "| format | bytes/value | write MB/s (float32-equivalent) | size vs torch.save |",
        "| --- | --- | --- | --- |",
    ]
    for label, bpv, speed in rows:
        lines.append(f"| {label} | {bpv:.3f} | {speed:.0f} | {bpv / torch_bpv:.2f}x |")
    lines += [
        "",
        f"Default store: **{torch_bpv / default_bpv:.2f}x smaller** than `torch.save`, writing at "
        f"{default_speed / torch_speed:.2f}x its speed. At full scale (2000 samples x 2 languages x "
        f"34 layers x 278 tokens x 2560) that is {default_bpv * FULL_SCALE_VALUES / 1e9:.0f} GB instead of "
        f"{torch_bpv * FULL_SCALE_VALUES / 1e9:.0f} GB.",
    ]
    return result("Store encoding: size and write speed", lines, rows=rows)


if __name__ == "__main__":
    main()
