"""Extraction on a GPU node with a random Gemma-3-4B: is the writer or the GPU the bound?

Builds a model folder offline: the tiny model's tokenizer and processor (:mod:`sae_store.models.tiny`)
with Gemma-3-4B's exact configuration (34 decoder layers of width 2560, 8 heads of 256, SigLIP
vision tower of 27 layers at 896 px, 256 image tokens), random bf16 weights drawn on the device. Then,
through the real path (``init_store`` -> ``load_model`` -> ``extract_activations``), extracts
``--samples`` images x 2 languages for each codec preset and writer-thread count, and times the same
batches and hooks with the data discarded (forward only). Prints samples/s, extract / forward-only
and which side bounds the run (target on a 16-core GPU node: <= 1.10 with the fast preset). Then
``evaluate`` on the extracted store (``benchmarks/bench_evaluate.py``'s helpers): tokens/s of the
stored-activation metrics of one layer with a TopK SAE of d_sae 16384, and the model runs of one layer
and one SAE set against the forward pass over the same samples.

    python benchmarks/gpu_extract.py                      # on a CUDA node
    python benchmarks/gpu_extract.py --tiny --samples 16  # anywhere: the tiny model on the CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sae_store.data.images import load_images  # noqa: E402
from sae_store.device import available_cores  # noqa: E402
from sae_store.extract.block import compute_block  # noqa: E402
from sae_store.extract.config import ExtractConfig  # noqa: E402
from sae_store.extract.init import init_store  # noqa: E402
from sae_store.extract.run import default_writer_threads, extract_activations, plan  # noqa: E402
from sae_store.models.loader import LoadedModel, load_model  # noqa: E402
from sae_store.models.tiny import build_tiny_gemma3  # noqa: E402
from sae_store.store import StoreConfig, open_store  # noqa: E402
from sae_store.store import schema as S  # noqa: E402
from sae_store.store.config import PRESETS  # noqa: E402
from sae_store.train.config import SaeConfig  # noqa: E402
from sae_store.train.sae import build_sae  # noqa: E402

#: Gemma-3-4B's configuration (text and vision towers), as published with the model.
GEMMA3_4B_TEXT = {
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "vocab_size": 262208,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    "layer_types": ["full_attention" if i % 6 == 5 else "sliding_attention" for i in range(34)],
    "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
    },
}
GEMMA3_4B_VISION = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 896,
    "patch_size": 14,
    "layer_norm_eps": 1e-6,
    "vision_use_head": False,
}
TINY_IMAGE = {"image_size": 64, "patch_size": 4, "mm_tokens_per_image": 256}


def build_model(folder: Path, *, tiny: bool, device: str) -> Path:
    """A model folder with random bf16 weights drawn on ``device``: Gemma-3-4B's configuration, or the
    tiny one with ``tiny`` (the same steps, so ``--tiny`` checks every one of them)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    build_tiny_gemma3(folder, seed=0, **TINY_IMAGE)
    config = json.loads((folder / "config.json").read_text())
    if not tiny:
        config["text_config"].update(GEMMA3_4B_TEXT)
        config["vision_config"].update(GEMMA3_4B_VISION)
        config["mm_tokens_per_image"] = 256
    torch.manual_seed(0)
    with torch.device(device):  # transformers' own random initialisation, on the device
        model = Gemma3ForConditionalGeneration(Gemma3Config.from_dict(config)).to(torch.bfloat16)
    for stale in folder.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(folder)
    if not tiny:
        for name in ("preprocessor_config.json", "processor_config.json"):
            path = folder / name
            data = json.loads(path.read_text()) if path.exists() else {}
            if "size" in data:
                data["size"] = {"height": 896, "width": 896}
            if "image_seq_length" in data:
                data["image_seq_length"] = 256
            if data:
                path.write_text(json.dumps(data, indent=2))
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def _inputs(folder: Path, n: int) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    images = folder / "images"
    images.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8)).save(images / f"{i}.png")
    table = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "image": [f"{i}.png" for i in range(n)],
            "gender": "male",
            "en_caption": "",
            "ar_caption": "",
        }
    )
    return images, table


def forward_only(store_path: Path, loaded: LoadedModel, images: Path, batch: int) -> None:
    """Everything extraction computes (batches, hooks, block buffers) with nothing written."""
    store = open_store(store_path)
    names = [str(s) for s in np.asarray(store.array(S.IMAGE)[...])]
    ids = [str(s) for s in np.asarray(store.array(S.SAMPLE)[...])]
    for w in plan(store, ExtractConfig(batch_size=batch)).work:
        b = w.block
        imgs, errors = load_images([images / n for n in names[b.start : b.stop]])
        compute_block(loaded, b, w.language, store.attrs["prompts"][w.language], w.layers, imgs, errors,
                      ids[b.start : b.stop], max_tokens=store.layout.max_tokens,
                      expected_tokens=store.attrs["tokens_per_language"][w.language], batch_size=batch,
                      round_bf16=True)  # fmt: skip
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()


def _evaluate_rows(loaded: LoadedModel, store_path: Path, images: Path, n: int, batch: int) -> list[str]:
    """``evaluate`` on the extracted store: the stored-activation metrics of its middle layer with a
    random TopK SAE of d_sae 16384 (k 64), and the model runs of that layer against the forward pass
    over ``n`` samples x 2 languages."""
    from benchmarks.bench_evaluate import model_run_costs, stored_rate

    store = open_store(store_path)
    device = loaded.device.type
    layer = store.layout.layers[len(store.layout.layers) // 2]
    sae = build_sae(SaeConfig(architecture="topk", d_in=store.layout.hidden_size, d_sae=16384, k=64))
    sae = sae.eval().requires_grad_(False).to(device)
    stored = stored_rate(store, layer, sae, device)
    names = [str(s) for s in np.asarray(store.array(S.IMAGE)[...])][:n]
    imgs = [Image.open(images / name).convert("RGB") for name in names]
    sub = images.parent / "evaluate-subset.zarr"
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "image": names, "gender": "male",
                          "en_caption": "", "ar_caption": ""})  # fmt: skip
    init_store(sub, table, Path(str(store.attrs["model"]["name_or_path"])), images_dir=images,
               config=StoreConfig(samples_per_shard=batch))  # fmt: skip
    costs = model_run_costs(loaded, store, imgs, sae, layer, lambda: forward_only(sub, loaded, images, batch),
                            batch=batch, rounds=2)  # fmt: skip
    fwd = costs["forward"]
    return [
        f"evaluate at layer {layer}, TopK SAE d_sae 16384 (k 64); model runs on {n} samples x 2 languages:",
        "",
        "| evaluate | value | vs extraction's forward pass |",
        "| --- | ---: | ---: |",
        f"| stored-activation metrics of one layer | {stored['tokens_per_s']:,.0f} tokens/s "
        f"(reading alone {stored['read_per_s']:,.0f}) | - |",
        f"| teacher-forced clean pass | {costs['clean']:.2f} s | {costs['clean'] / fwd:.2f}x |",
        f"| one replayed run (ablation or SAE spliced in; target <= 1.3x) | {costs['per_run']:.2f} s | "
        f"{costs['per_run'] / fwd:.2f}x |",
        f"| one layer, one SAE set (clean + {costs['runs']} runs) | {costs['evaluate']:.2f} s | "
        f"{costs['evaluate'] / fwd:.2f}x |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny model on the CPU (a check of the script)"
    )
    parser.add_argument("--samples", type=int, default=160, help="images; x2 languages (default 160)")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per forward pass (default 16)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="codec presets (default all)")
    parser.add_argument("--threads", help="writer threads to try, e.g. 1,4,15 (default 1, 4 and the default)")
    parser.add_argument("--dir", type=Path, help="working folder (default a temporary one, deleted)")
    parser.add_argument(
        "--eval-samples", type=int, default=32, help="images of the evaluate rows (default 32)"
    )
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device; run with --tiny to check the script on a CPU")
    default = default_writer_threads(device)
    threads = sorted(
        {int(t) for t in args.threads.split(",")} if args.threads else {1, min(4, default), default}
    )
    work = args.dir or Path(tempfile.mkdtemp(prefix="gpu-extract-"))
    rows = []
    try:
        t0 = time.perf_counter()
        model_dir = build_model(work / "model", tiny=args.tiny, device=device)
        images, table = _inputs(work, args.samples)
        loaded = load_model(model_dir, device=device, dtype="bfloat16")
        print(
            f"model ready in {time.perf_counter() - t0:.0f} s on {device}; {available_cores()} cores",
            flush=True,
        )
        templates = {}
        for preset in args.presets.split(","):
            templates[preset] = init_store(work / f"{preset}.zarr", table, model_dir, images_dir=images,
                                           config=StoreConfig(compressor=preset)).path  # fmt: skip
        first = next(iter(templates.values()))
        forward_only(first, loaded, images, args.batch_size)  # warm-up (kernels, allocator)
        forward, n = [], 2 * args.samples
        results = []
        for preset, template in templates.items():
            t0 = time.perf_counter()  # forward only before each preset's runs: interleaved, best taken
            forward_only(first, loaded, images, args.batch_size)
            forward.append(time.perf_counter() - t0)
            print(f"forward only: {forward[-1]:.1f} s, {n / forward[-1]:.2f} sample-languages/s", flush=True)
            for t in threads:
                dest = work / f"run-{preset}-{t}.zarr"
                shutil.copytree(template, dest)
                t0 = time.perf_counter()
                config = ExtractConfig(
                    batch_size=args.batch_size, writer_threads=t, on_nonfinite="record", progress=False
                )
                summary = extract_activations(open_store(dest), loaded, config)
                seconds = time.perf_counter() - t0
                if results:  # the first run's store is kept for the evaluate rows
                    shutil.rmtree(dest)
                else:
                    kept = dest
                results.append((preset, t, seconds, summary.bytes_written / 1e6 / seconds))
                print(f"  {preset}, {t} writer threads: {seconds:.1f} s", flush=True)
        fwd = min(forward)
        for preset, t, seconds, mb_s in results:
            bound = "GPU (model)" if seconds / fwd <= 1.10 else "writer"
            rows.append((preset, t, n / seconds, seconds / fwd, mb_s, bound))
        evaluate = _evaluate_rows(loaded, kept, images, min(args.eval_samples, args.samples), args.batch_size)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"{'tiny model on CPU' if args.tiny else 'random Gemma-3-4B, ' + torch.cuda.get_device_name()}: "
        f"{args.samples} samples x 2 languages, batch {args.batch_size}, {available_cores()} cores; forward "
        f"only {fwd:.1f} s ({n / fwd:.2f} sample-languages/s)",
        "",
        "| preset | writer threads | sample-languages/s | extract / forward-only | writer MB/s | bound |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        *(f"| {p} | {t} | {s:.2f} | {r:.2f} | {mb:.0f} | {b} |" for p, t, s, r, mb, b in rows),
        "",
        *evaluate,
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
