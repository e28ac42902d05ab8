"""``sae-store explain`` throughput: explained and scored features per minute, by explainer and concurrency.

Explainers: the tiny random Gemma 3 as a local model folder (it generates ``max_new_tokens`` tokens per
reply; it is a VLM, so image-token features get their marked images) and the rule-based loopback
endpoint over HTTP on 127.0.0.1, answering at once or after a fixed latency. Runs are interleaved in
rounds on the same store and features.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run import result
from sae_store.autointerp.config import ExplainConfig
from sae_store.autointerp.loopback import serve_loopback
from sae_store.autointerp.run import explain
from sae_store.models.tiny import build_tiny_gemma3
from tests.analyze.synthetic import build_store

FEATURES = "0:0,0:1,0:3,0:4,1:0,1:2"
ROUNDS = 2
#: Seconds the "slow" loopback endpoint waits before each reply (a model's latency).
LATENCY = 0.1
EXPLAINERS = ("loopback", f"loopback+{LATENCY:g}s", "local")


def _run(spec: str, model: str, built: Any, concurrency: int, cache: Path) -> tuple[float, float]:
    """Seconds of a run with a fresh cache and of the same run again (all replies cached)."""
    config = ExplainConfig(
        explainer=spec,
        explainer_model=model,
        features=FEATURES,
        concurrency=concurrency,
        n_held=8,
        max_new_tokens=16,
        device="cpu",
        cache=str(cache),
    )
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        explain(built.store.path, str(built.sae_dirs[0].parent), config)
        times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main() -> dict:
    logging.getLogger("sae_store").setLevel(logging.WARNING)
    n = len(FEATURES.split(","))
    with tempfile.TemporaryDirectory() as tmp, serve_loopback(delay=LATENCY) as slow:
        root = Path(tmp)
        built = build_store(root / "store")
        model = build_tiny_gemma3(root / "model", seed=0)
        specs = {
            "loopback": ("loopback", "default"),
            EXPLAINERS[1]: (slow.url, "slow"),
            "local": (str(model), "default"),
        }
        runs: dict[tuple[str, int], list[float]] = {(name, c): [] for name in EXPLAINERS for c in (1, 8)}
        rows = []
        for r in range(ROUNDS):
            for name, c in runs:
                fresh, cached = _run(*specs[name], built, c, root / f"cache-{r}-{len(rows)}")
                runs[(name, c)].append(n / max(fresh - cached, 1e-9) * 60)
                rows.append(
                    f"| {r + 1} | {name} | {c} | {fresh:.1f} | {cached:.1f} | {runs[(name, c)][-1]:.0f} |"
                )
    med = {k: statistics.median(v) for k, v in runs.items()}
    lines = [
        f"{n} features of a synthetic store (2 layers, en + ar, 40 samples), each explained once and scored "
        "by detection and fuzzing in 2 languages (9 requests per feature). Each run is timed with a "
        "fresh reply cache and again with every reply cached; their difference is the time spent "
        "asking, which gives the features per minute (the rest, reading and encoding the examples "
        "and loading a local model, is the same for every explainer). Explainers: the rule-based "
        f"loopback endpoint over HTTP (no latency, and with {LATENCY:g} s per reply, as a served model "
        "has), and the tiny random Gemma 3 folder (16 new tokens per reply).",
        "",
        "| round | explainer | concurrency | fresh s | cached s | features/min asking |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "| explainer | concurrency 1 | concurrency 8 | 8 vs 1 |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {med[(name, 1)]:.0f} | {med[(name, 8)]:.0f} | "
            f"{med[(name, 8)] / med[(name, 1)]:.2f}x |"
            for name in EXPLAINERS
        ),
        "",
        "Medians. A local model folder answers one request at a time (one model behind a lock), so "
        "concurrency cannot speed it up; an endpoint serves requests in parallel.",
    ]
    return result(
        "Auto-interpretation: explanations and scores per minute",
        lines,
        per_minute={f"{k[0]}-{k[1]}": v for k, v in med.items()},
    )


if __name__ == "__main__":
    main()
