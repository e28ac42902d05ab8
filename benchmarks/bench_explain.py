"""``sae-store explain`` throughput: explained and scored features per minute, by explainer and concurrency.

Explainers: the tiny random Gemma 3 as a local model folder (it generates ``max_new_tokens`` tokens per
reply; it is a VLM, so image-token features get their marked images) and the rule-based loopback
endpoint over HTTP on 127.0.0.1. Each run explains the same features of a synthetic store (2 layers,
en + ar, 40 samples) with a fresh reply cache, so every request is made; runs are interleaved in
rounds. A feature costs 1 explanation request and 8 scoring requests (detection and fuzzing, 2
languages, 2 batches). The local model answers one request at a time (one model, a lock), so its
concurrency changes nothing; an endpoint serves requests in parallel.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.run import result
from sae_store.autointerp.config import ExplainConfig
from sae_store.autointerp.run import explain
from sae_store.models.tiny import build_tiny_gemma3
from tests.analyze.synthetic import build_store

FEATURES = "0:0,0:1,0:3,0:4,1:0,1:2"
ROUNDS = 2


def main() -> dict:
    logging.getLogger("sae_store").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        built = build_store(root / "store")
        model = build_tiny_gemma3(root / "model", seed=0)
        saes = str(built.sae_dirs[0].parent)
        runs = {(name, c): [] for name in ("loopback", "local") for c in (1, 8)}  # type: dict[tuple[str, int], list[float]]
        rows = []
        for r in range(ROUNDS):
            for name, c in runs:
                spec = "loopback" if name == "loopback" else str(model)
                config = ExplainConfig(
                    explainer=spec,
                    features=FEATURES,
                    concurrency=c,
                    n_held=8,
                    max_new_tokens=16,
                    device="cpu",
                    cache=str(root / f"cache-{r}-{name}-{c}"),
                )
                t0 = time.perf_counter()
                entries = explain(built.store.path, saes, config)
                took = time.perf_counter() - t0
                runs[(name, c)].append(len(entries) / took * 60)
                rows.append(f"| {r + 1} | {name} | {c} | {took:.1f} | {runs[(name, c)][-1]:.0f} |")
    med = {k: statistics.median(v) for k, v in runs.items()}
    lines = [
        f"{len(FEATURES.split(','))} features, each explained once and scored by detection and fuzzing in 2 "
        "languages (9 requests), fresh cache; seconds and features per minute:",
        "",
        "| round | explainer | concurrency | s | features/min |",
        "| ---: | --- | ---: | ---: | ---: |",
        *rows,
        "",
        "| explainer | concurrency 1 | concurrency 8 | 8 vs 1 |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {med[(name, 1)]:.0f} | {med[(name, 8)]:.0f} | "
            f"{med[(name, 8)] / med[(name, 1)]:.2f}x |"
            for name in ("loopback", "local")
        ),
        "",
        "Medians; a rerun with the cache kept asks nothing again. The times include reading and encoding the "
        "examples (and, for the local folder, loading the model), which is the same for both concurrencies.",
    ]
    return result(
        "Auto-interpretation: explanations and scores per minute",
        lines,
        per_minute={f"{k[0]}-{k[1]}": v for k, v in med.items()},
    )


if __name__ == "__main__":
    main()
