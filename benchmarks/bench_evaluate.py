"""``sae-store evaluate``: speed of the stored-activation metrics, cost of the model runs against the
extraction forward pass, and the demo's two SAE sets compared.

1. Stored-activation metrics on a store of the full study's shape per layer (278 tokens of which 256
   image tokens, hidden 2560, shards of 16) with a TopK SAE of d_sae 16384 (k 64): tokens/s of one
   layer's pass (read, encode, decode, every split's totals, pooled latents), against reading alone.
2. Model runs on the benchmark's random Gemma 3 (8 layers, hidden 512, 256 image tokens), float32 on
   CPU with one torch thread, against extraction's forward pass over the same samples and languages
   (the same batches and hooks, data discarded): the teacher-forced clean pass, one replayed run (an
   SAE or an ablation spliced in at the middle layer), and everything one layer costs for one SAE set
   (clean pass, then zero and mean ablation and the SAE at image tokens and at every token).
   Interleaved rounds, median.
3. The demo (``configs/demo.yaml``) up to ``evaluate``: its SAEs and their copy in sparsify's layout,
   per layer.

The helpers :func:`stored_rate` and :func:`model_run_costs` also make ``gpu_extract.py``'s evaluate rows.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.bench_io import gemma_like
from benchmarks.bench_store import gemma_roles, synthetic_inputs
from benchmarks.run import result
from sae_store.evaluate.behaviour import LanguageCaptions, measure_behaviour
from sae_store.evaluate.config import EvaluateConfig
from sae_store.evaluate.stored import measure_stored
from sae_store.evaluate.tokens import StoredTokens
from sae_store.intervene.batches import caption_log_probs, prompt_batch, teacher_forced
from sae_store.models.loader import LoadedModel
from sae_store.store import ActivationStore, StoreConfig, create_store, open_store
from sae_store.store import schema as S
from sae_store.train.config import SaeConfig
from sae_store.train.sae import SparseAutoencoder, build_sae

TOKENS, IMAGE_TOKENS, HIDDEN, SHARD, D_SAE, K = 278, 256, 2560, 16, 16384, 64
STORED_SAMPLES, STORED_ROUNDS = 16, 3
#: Held-out tokens of one layer in the full study (200 of 2000 samples x 2 languages x 278 tokens).
FULL_LAYER_TOKENS = 200 * 2 * TOKENS
MODEL_SAMPLES, BATCH, CAPTION_TOKENS, ROUNDS = 16, 8, 24, 3


def _store(path: Path) -> ActivationStore:
    langs = {"en": TOKENS, "ar": TOKENS}
    samples, info = synthetic_inputs(STORED_SAMPLES, HIDDEN, langs, image_tokens=IMAGE_TOKENS)
    store = create_store(path, samples, info, config=StoreConfig(samples_per_shard=SHARD))
    rng = np.random.default_rng(0)
    roles = np.tile(gemma_roles(TOKENS, IMAGE_TOKENS), (STORED_SAMPLES, 1))
    for lang in langs:
        for b in store.blocks:
            n = b.stop - b.start
            store.write(S.TOKEN_ROLE, roles[:n], start=b.start, language=lang)
            store.write(S.N_TOKENS, np.full(n, TOKENS, np.int32), start=b.start, language=lang)
            x = gemma_like(rng, (n, TOKENS, HIDDEN))
            store.write(S.ACTIVATIONS, x, start=b.start, layer=0, language=lang)
            store.write(S.COMPLETE, np.ones(n, bool), start=b.start, layer=0, language=lang)
    return store


def stored_rate(
    store: ActivationStore, layer: int, sae: SparseAutoencoder, device: str, *, rounds: int = 1
) -> dict[str, Any]:
    """Tokens/s of one layer's stored-activation pass with ``sae``, of reading those tokens alone and of
    the SAE's encoder alone on them (in memory), in ``rounds`` interleaved rounds (medians, and each
    round's seconds)."""
    samples = np.arange(store.layout.n_samples)
    batches = [b.x for b in StoredTokens(store, layer, samples).batches()]
    chunks = [torch.from_numpy(x[i : i + 4096]).to(device) for x in batches for i in range(0, len(x), 4096)]
    tokens = sum(len(c) for c in chunks)

    def read() -> None:
        for _ in StoredTokens(store, layer, samples).batches():
            pass

    @torch.no_grad()
    def encode() -> None:
        for c in chunks:
            sae.encode(c)

    def every_metric() -> None:
        measure_stored(StoredTokens(store, layer, samples), {"sae": sae}, batch_tokens=4096, device=device,
                       progress=False)  # fmt: skip

    times: dict[str, list[float]] = {"read": [], "encode": [], "all": []}
    for _ in range(rounds):
        for name, fn in (("read", read), ("encode", encode), ("all", every_metric)):
            t0 = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "tokens": tokens,
        "seconds": med["all"],
        "rounds": times,
        "tokens_per_s": tokens / med["all"],
        "read_per_s": tokens / med["read"],
        "encode_per_s": tokens / med["encode"],
    }


def model_run_costs(
    loaded: LoadedModel,
    store: ActivationStore,
    images: list[Image.Image],
    sae: SparseAutoencoder,
    layer: int,
    forward: Callable[[], None],
    *,
    batch: int,
    rounds: int,
) -> dict[str, float]:
    """Median seconds of ``forward`` (extraction's forward pass), of the teacher-forced clean pass and of
    evaluate's model runs at ``layer`` with ``sae`` (both languages, ``images``), in interleaved rounds."""
    rng = np.random.default_rng(0)
    prompts = store.attrs["prompts"]
    captions = [[int(t) for t in rng.integers(300, 600, CAPTION_TOKENS)] for _ in images]
    languages = {
        g: LanguageCaptions(prompts[lang], images, captions) for g, lang in enumerate(store.layout.languages)
    }
    means = {g: torch.zeros(4, store.layout.hidden_size) for g in languages}
    config = EvaluateConfig(batch_size=batch)

    def clean() -> None:
        for data in languages.values():
            for i in range(0, len(images), batch):
                tf = teacher_forced(loaded, prompt_batch(loaded, images[i : i + batch], data.prompt),
                                    captions[i : i + batch])  # fmt: skip
                caption_log_probs(loaded, tf)

    def evaluate() -> None:
        measure_behaviour(loaded, layer, languages, {"sae": sae}, means, config, progress=False)

    times: dict[str, list[float]] = {"forward": [], "clean": [], "evaluate": []}
    for _ in range(rounds):
        for name, fn in (("forward", forward), ("clean", clean), ("evaluate", evaluate)):
            t0 = time.perf_counter()
            fn()
            if loaded.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    runs = len(config.splice) * 3  # zero ablation, mean ablation and the SAE per splice
    return {**med, "runs": runs, "per_run": (med["evaluate"] - med["clean"]) / runs}


def _losses(evaluation: Any) -> Any:
    """Per layer and splice, the mean caption-token losses behind the CE and KL scores (nats)."""
    import pandas as pd

    metrics = ["ce_loss_without_sae", "ce_loss_with_ablation", "ce_loss_with_sae", "kl_div_with_ablation",
               "kl_div_with_sae"]  # fmt: skip
    rows = []
    for layer in evaluation["layer"].values.tolist():
        for splice in evaluation["splice"].values.tolist():
            at = evaluation["behaviour_total"].sel(layer=layer, splice=splice)
            rows.append({"layer": layer, "splice": splice,
                         **{m: float(at.sel(behaviour_metric=m)) for m in metrics}})  # fmt: skip
    return pd.DataFrame(rows)


def _demo_table(tmp: Path) -> tuple[str, str, str]:
    from sae_store.evaluate import best_per_layer, comparison_table, read_evaluations
    from sae_store.jobs import run_pipeline
    from sae_store.jobs.config import demo_config

    cfg = demo_config(tmp / "demo")
    skip = ("caption", "analyze", "intervene-ablate", "intervene-amplify", "intervene-neutralise",
            "intervene-summary", "report")  # fmt: skip
    run_pipeline(dataclasses.replace(cfg, skip=skip), echo=lambda line: None)
    evaluations = read_evaluations(open_store(cfg.paths.path("store")))
    table = comparison_table(evaluations)
    best = best_per_layer(table, EvaluateConfig().rank_by)
    columns = ["layer", "set", "explained_variance", "explained_variance_legacy", "explained_variance:image",
               "l0", "dead_fraction", "dense_fraction", "ce_loss_score:image", "ce_loss_score:all",
               "kl_div_score:all", "gender probe top-1 latent", "gender probe raw"]  # fmt: skip
    shown = table[[c for c in columns if c in table]]
    return _markdown(shown), _markdown(best), _markdown(_losses(evaluations["saes"]))


def _markdown(frame: Any) -> str:
    def cell(v: Any) -> str:
        return ("-" if v != v else f"{v:.3f}") if isinstance(v, float) else str(v)

    rows = [" | ".join(cell(v) for v in row) for row in frame.itertuples(index=False)]
    return "\n".join(
        ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
        + [f"| {r} |" for r in rows]
    )


def main() -> dict[str, Any]:
    from benchmarks.bench_extract import IMAGE_KW, _demo_inputs, _forward_only
    from sae_store.extract.init import init_store
    from sae_store.models.loader import load_model
    from sae_store.models.tiny import MEDIUM, build_tiny_gemma3

    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    threads = torch.get_num_threads()
    try:
        sae = build_sae(SaeConfig(architecture="topk", d_in=HIDDEN, d_sae=D_SAE, k=K)).eval()
        stored = stored_rate(_store(tmp / "full.zarr"), 0, sae, "cpu", rounds=STORED_ROUNDS)
        torch.set_num_threads(1)
        model = build_tiny_gemma3(tmp / "medium", seed=0, **MEDIUM, **IMAGE_KW)
        images_dir, table = _demo_inputs(tmp)
        table = table.iloc[:MODEL_SAMPLES]
        store = init_store(tmp / "model.zarr", table, model, images_dir=images_dir,
                           config=StoreConfig(samples_per_shard=BATCH))  # fmt: skip
        loaded = load_model(model, device="cpu", dtype="float32")
        images = [Image.open(images_dir / name).convert("RGB") for name in table["image"]]
        small = build_sae(SaeConfig(architecture="topk", d_in=loaded.adapter.hidden_size, expansion=8, k=32))
        layer = loaded.adapter.n_layers // 2
        costs = model_run_costs(loaded, store, images, small.eval(), layer,
                                lambda: _forward_only(store.path, loaded, images_dir), batch=BATCH,
                                rounds=ROUNDS)  # fmt: skip
        torch.set_num_threads(threads)
        demo, demo_best, demo_losses = _demo_table(tmp)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    fwd = costs["forward"]
    lines = [
        f"**Stored-activation metrics** - one layer of the full study's shape ({TOKENS} tokens, hidden "
        f"{HIDDEN}), TopK SAE d_sae {D_SAE} (k {K}), {stored['tokens']:,} tokens, CPU, "
        f"{threads} torch threads:",
        "",
        "| pass | tokens/s | one layer of the full study (111k held-out tokens) |",
        "| --- | ---: | ---: |",
        f"| reading the tokens (decode, role split) | {stored['read_per_s']:,.0f} | "
        f"{FULL_LAYER_TOKENS / stored['read_per_s']:.0f} s |",
        f"| the SAE's encoder alone (tokens in memory) | {stored['encode_per_s']:,.0f} | "
        f"{FULL_LAYER_TOKENS / stored['encode_per_s']:.0f} s |",
        f"| every metric of every split (read, encode, decode, totals, pooled latents) | "
        f"{stored['tokens_per_s']:,.0f} | {FULL_LAYER_TOKENS / stored['tokens_per_s']:.0f} s |",
        "",
        f"Median of {STORED_ROUNDS} interleaved rounds; every metric, seconds per round: "
        + ", ".join(f"{t:.1f}" for t in stored["rounds"]["all"])
        + f"; the encoder alone: {', '.join(f'{t:.1f}' for t in stored['rounds']['encode'])}. The pass "
        "costs the encoder's matmul plus "
        f"{stored['seconds'] / (stored['tokens'] / stored['encode_per_s']) - 1:.0%}; a GPU does it in "
        "seconds (`benchmarks/gpu_extract.py`'s evaluate rows).",
        "",
        f"**Model runs** - random Gemma 3 ({MEDIUM['num_layers']} layers, hidden {MEDIUM['hidden_size']}, "
        f"256 image tokens), {MODEL_SAMPLES} samples x 2 languages, batch {BATCH}, {CAPTION_TOKENS} caption "
        f"tokens, SAE spliced after layer {layer}, float32 on CPU, 1 torch thread, median of {ROUNDS} "
        "interleaved rounds:",
        "",
        "| run over the same samples | seconds | vs extraction's forward pass |",
        "| --- | ---: | ---: |",
        f"| extraction's forward pass (every layer hooked, data discarded) | {fwd:.2f} | 1.00x |",
        f"| teacher-forced clean pass (caption log-probs) | {costs['clean']:.2f} | "
        f"{costs['clean'] / fwd:.2f}x |",
        f"| **one run replayed from the clean pass** (an ablation or an SAE spliced in; target <= 1.3x) | "
        f"{costs['per_run']:.2f} | **{costs['per_run'] / fwd:.2f}x** |",
        f"| one layer, one SAE set: clean pass + {costs['runs']} runs (zero, mean ablation, SAE; image and "
        f"all positions) | {costs['evaluate']:.2f} | {costs['evaluate'] / fwd:.2f}x |",
        "",
        "A second SAE set adds two replayed runs (one per splice); the clean pass and the ablations are "
        "shared by every set of a layer.",
        "",
        "**The demo's two SAE sets** (`configs/demo.yaml`: TopK k 8, d_sae 256, on the tiny random Gemma 3; "
        "11 held-out images x 2 languages; `pretrained-layout` is the same SAEs written by `export-saes` in "
        "sparsify's layout, so every number matches):",
        "",
        demo,
        "",
        "Best per layer (CE loss recovered at image tokens; explained variance where that is undefined "
        "because the tiny model's last layer attends through a 16-token window and no longer reaches the "
        "image tokens):",
        "",
        demo_best,
        "",
        "The losses behind the scores (set `saes`, nats per caption token). The tiny model's weights are "
        "random: its caption cross-entropy hardly depends on a layer's output (zero ablation moves it by "
        "a few thousandths of a nat, even downwards), so CE loss recovered (a ratio over CE ablated - CE "
        "clean) leaves [0, 1] on it; the KL score, whose denominator is always positive, is the stable one "
        "here. On a trained model both are meaningful:",
        "",
        demo_losses,
    ]
    return result(
        "Evaluate: stored metrics, model runs, the demo's SAE sets", lines, stored=stored, costs=costs
    )


if __name__ == "__main__":
    main()
