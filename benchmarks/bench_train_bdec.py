"""Where the decoder bias starts: the first batch's mean (the default) vs zeros (SAELens's default),
on the known dictionary and on store-shaped data (large constant channels, as residual streams
have), sae-store's trainer at its other defaults, TopK, 300 steps."""

from __future__ import annotations

from typing import Any

from benchmarks.bench_train_quality import SMALL_BATCH, STEPS, _fmt, _solo, store_rows
from benchmarks.run import result

POINTS: list[tuple[str, dict[str, Any]]] = [("zeros", {"b_dec_init": "zeros"}), ("mean (default)", {})]


def main() -> dict[str, Any]:
    known = [f"| {label} | {_fmt(_solo(STEPS, SMALL_BATCH, **cfg))} |" for label, cfg in POINTS]
    store = store_rows(STEPS, SMALL_BATCH, POINTS)
    return result(
        "SAE training: where the decoder bias starts",
        [
            f"TopK (d_sae 2048, k 16), batches of {SMALL_BATCH}, {STEPS} steps, the other settings at "
            "their defaults; the same data for both starts.",
            "",
            'Known dictionary (the one of "SAE training quality per token"; its mean is small next to its '
            "spread):",
            "",
            "| b_dec start | FVU | L0 | dead | recovery |",
            "| --- | --- | --- | --- | --- |",
            *known,
            "",
            "Store-shaped data through `StoreDataProvider` (four constant channels at +40, bf16, 32 atoms "
            "active per token):",
            "",
            "| b_dec start | lr | decoder init norm | dead window (tokens) | FVU | L0 | dead (held-out) | "
            "dead in last training window | recovery |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *store,
        ],
    )


if __name__ == "__main__":
    main()
