"""``sae-store verify`` throughput against a plain full read of the same store, and the cost of claims.

1. GB/s of stored (compressed) data: ``verify_store`` (decode every file, flag and token checks,
   NaN/inf and float16 counts) against reading every activation shard with zarr, one shard after
   the other (what a script does), and against the same reads on ``verify``'s thread pool (the
   same parallelism: the difference is the cost of the checks). Interleaved in rounds; each round
   and the median are reported.
2. Milliseconds an extraction task spends claiming and releasing its shard blocks (the exclusive
   ``link`` per block, reading nothing when no one else holds them), for 1, 8 and 125 blocks
   (125 = a 2000-sample store in one task).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.bench_store import TOKENS, synthetic_activations, synthetic_inputs
from benchmarks.run import result
from sae_store.store import StoreConfig, create_store
from sae_store.store import schema as S
from sae_store.store.lock import register_extraction
from sae_store.store.verify import verify_store

N_SAMPLES, HIDDEN, SHARD, ROUNDS = 96, 2560, 16, 3
CLAIM_BLOCKS, CLAIM_REPEATS = (1, 8, 125), 15


def _stored_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / S.ACTIVATIONS / "c").rglob("*") if p.is_file())


def _plain_read(store, pool: ThreadPoolExecutor | None) -> None:
    arr = store.array(S.ACTIVATIONS)

    def read(start: int) -> float:
        return float(np.asarray(arr[0, 0, start : start + SHARD]).ravel()[0])

    starts = range(0, N_SAMPLES, SHARD)
    list(pool.map(read, starts) if pool is not None else map(read, starts))


def fill_synthetic(store, values: np.ndarray, shard: int) -> None:
    """Write layer 0, language "en" of ``store`` from ``values`` as the extraction does: every block's
    per-token arrays, activations, statistics, then flags (so that ``verify`` finds a whole store)."""
    n = len(values)
    roles = np.full((n, TOKENS), 2, np.int8)
    for start in range(0, n, shard):
        where = {"start": start, "language": "en"}
        part = values[start : start + shard]
        store.write(S.N_TOKENS, np.full(len(part), TOKENS, np.int32), **where)
        store.write(S.TOKEN_ROLE, roles[start : start + shard], **where)
        store.write(S.INPUT_IDS, np.full((len(part), TOKENS), 7, np.int32), **where)
        store.write(S.ACTIVATIONS, part, layer=0, **where)
        store.write(S.MAX_ABS, np.abs(part).max(axis=(1, 2)), layer=0, **where)
        store.write(S.NONFINITE, np.zeros(len(part), np.int32), layer=0, **where)
        store.write(S.COMPLETE, np.ones(len(part), bool), layer=0, **where)


def timed(fn) -> float:
    """Seconds ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        samples, info = synthetic_inputs(N_SAMPLES, HIDDEN, {"en": TOKENS}, image_tokens=256)
        store = create_store(tmp / "store.zarr", samples, info, config=StoreConfig(samples_per_shard=SHARD))
        fill_synthetic(store, synthetic_activations(np.random.default_rng(0), N_SAMPLES), SHARD)
        gb = _stored_bytes(store.path) / 1e9
        workers = os.cpu_count() or 1
        rounds: list[dict[str, float]] = []
        with ThreadPoolExecutor(workers) as pool:
            for _ in range(ROUNDS):
                report = None

                def check() -> None:
                    nonlocal report
                    report = verify_store(store)

                rounds.append(
                    {
                        "verify": gb / timed(check),
                        "plain": gb / timed(lambda: _plain_read(store, None)),
                        "plain_pool": gb / timed(lambda: _plain_read(store, pool)),
                    }
                )
                assert report is not None and report.ok, report
        claim_ms = {}
        for n in CLAIM_BLOCKS:
            times = []
            for _ in range(CLAIM_REPEATS):
                t0 = time.perf_counter()
                with register_extraction(store.path, range(n)):
                    pass
                times.append((time.perf_counter() - t0) * 1e3)
            claim_ms[n] = statistics.median(times)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    lines = [
        f"{N_SAMPLES} samples x {TOKENS} tokens x {HIDDEN} hidden, bf16-exact float32, Blosc zstd 3, "
        f"shards of {SHARD}: {gb * 1e3:.0f} MB stored, local disk (page cache); {workers} threads.",
        "",
        "| round | verify GB/s | plain read GB/s (shard after shard) | plain read GB/s (same thread pool) |",
        "| --- | --- | --- | --- |",
    ]
    for i, r in enumerate(rounds, 1):
        lines.append(f"| {i} | {r['verify']:.3f} | {r['plain']:.3f} | {r['plain_pool']:.3f} |")
    lines += [
        f"| median | **{med['verify']:.3f}** | {med['plain']:.3f} | {med['plain_pool']:.3f} |",
        "",
        f"verify reads at **{med['verify'] / med['plain']:.2f}x** a plain sequential read and "
        f"{med['verify'] / med['plain_pool']:.2f}x the same reads on its thread pool (the rest is the cost "
        "of its checks).",
        "",
        f"| blocks claimed by one task | claim + release, ms (median of {CLAIM_REPEATS}) | per block, ms |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {n} | {ms:.2f} | {ms / n:.3f} |" for n, ms in claim_ms.items()]
    return result(
        "verify throughput and the cost of block claims",
        lines,
        verify_gbps=med["verify"],
        plain_gbps=med["plain"],
        claim_ms=claim_ms,
    )


if __name__ == "__main__":
    main()
