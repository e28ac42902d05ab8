"""Logit-lens precomputation per layer at Gemma-3-4B's shape (d 2560, vocabulary 262,144, d_sae 16,384).

A fraction of a layer's features (``FEATURES`` of 16,384) goes through the final RMSNorm and the
unembedding on this machine's CPU threads, in two ways interleaved in rounds on the same random
weights: ``sae_store.analyze.logit_lens`` (vocabulary in blocks, running top/bottom k, gender-word
ranks by one sorted search per block) and the plain way (one full product, ``topk`` and ranks by
comparison). The time per layer is the fraction's time scaled to 16,384 features (the work is
linear in the features), and said to be extrapolated.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from benchmarks.run import result
from sae_store.analyze.logit_lens import logit_lens
from sae_store.data.gender import study_terms

D, VOCAB, D_SAE, FEATURES, K, ROUNDS = 2560, 262_144, 16_384, 256, 20, 3
TERMS = len(study_terms())  # the words ranked for every feature


def _rmsnorm(weight: torch.Tensor) -> torch.nn.Module:
    norm = torch.nn.RMSNorm(D, eps=1e-6, elementwise_affine=False)
    return lambda x: norm(x) * (1.0 + weight)  # type: ignore[return-value]


def _plain(w_dec: torch.Tensor, norm, w_U: torch.Tensor, terms: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        logits = norm(w_dec) @ w_U.T
        torch.topk(logits, K, dim=1)
        torch.topk(logits, K, dim=1, largest=False)
        own = logits[:, torch.as_tensor(terms)]
        for w in range(len(terms)):
            (logits > own[:, w : w + 1]).sum(1)


def main() -> dict:
    g = torch.Generator().manual_seed(0)
    w_U = torch.randn(VOCAB, D, generator=g) * 0.02
    w_dec = torch.randn(FEATURES, D, generator=g)
    norm = _rmsnorm(torch.randn(D, generator=g) * 0.1)
    terms = np.random.default_rng(0).choice(VOCAB, TERMS, replace=False)
    times: dict[str, list[float]] = {"blocked": [], "plain": []}
    rows = []
    for r in range(ROUNDS):
        for name in times:
            t0 = time.perf_counter()
            if name == "blocked":
                logit_lens(w_dec, norm, w_U, terms, k=K, block=16_384)
            else:
                _plain(w_dec, norm, w_U, terms)
            times[name].append(time.perf_counter() - t0)
        rows.append(f"| {r + 1} | {times['blocked'][-1]:.1f} | {times['plain'][-1]:.1f} |")
    med = {name: statistics.median(v) for name, v in times.items()}
    scale = D_SAE / FEATURES
    lines = [
        f"{FEATURES} of {D_SAE} features of one layer, d {D}, vocabulary {VOCAB:,}, k {K}, "
        f"{TERMS} gender-word tokens ranked, "
        f"float32 on {torch.get_num_threads()} CPU threads; interleaved rounds, seconds:",
        "",
        "| round | blocked (sae-store) | plain (one product) |",
        "| ---: | ---: | ---: |",
        *rows,
        f"| median | {med['blocked']:.1f} | {med['plain']:.1f} |",
        "",
        f"**Per layer (extrapolated x{scale:.0f} from the measured fraction): "
        f"{med['blocked'] * scale / 60:.1f} min** "
        f"with sae-store's blocks (plain: {med['plain'] * scale / 60:.1f} min, and it needs a "
        f"{FEATURES}x{VOCAB:,} float matrix at once, "
        f"{FEATURES * VOCAB * 4 / 2**30:.2f} GiB for this fraction); "
        f"34 layers: {med['blocked'] * scale * 34 / 3600:.1f} h on this CPU. On a GPU the same code runs "
        "with `analyze logit_lens --device cuda`.",
    ]
    return result(
        "Logit lens: precomputation per layer", lines, median_s=med, per_layer_s=med["blocked"] * scale
    )


if __name__ == "__main__":
    main()
