"""Randomised SIGKILL trials: ``extract`` and ``append`` killed at random moments, recovered, compared.

Each trial runs the real command in its own process on a copy of a tiny store (tiny random Gemma 3,
10 samples, blocks of 4), SIGKILLs it after a random time drawn over the command's own duration,
runs the recovery command (``extract`` again; ``unlock`` then ``append`` again) and compares the
store with the uninterrupted one bit for bit. The tests run a few such trials; this runs more.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.run import result
from sae_store.extract.init import init_store
from sae_store.models.tiny import build_tiny_gemma3
from sae_store.store import StoreConfig, open_store
from tests.extract.helpers import cli_env, extract_args, samples, store_files

N_SAMPLES, SHARD, TRIALS = 10, 4, 8


def _cli(args: list[str], kill_after: float | None = None) -> tuple[int, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sae_store_cli", *args],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    t0 = time.perf_counter()
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode, time.perf_counter() - t0


def main() -> dict:
    rng = random.Random(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    try:
        model = build_tiny_gemma3(tmp / "model", seed=0)
        images = tmp / "images"
        images.mkdir()
        pix = np.random.default_rng(7)
        for i in range(N_SAMPLES + 4):
            Image.fromarray(pix.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(
                images / f"im{i:02d}.png"
            )
        empty = init_store(
            tmp / "empty.zarr",
            samples(images, range(N_SAMPLES)),
            model,
            config=StoreConfig(samples_per_shard=SHARD),
        ).path
        new = tmp / "new.csv"
        samples(images, range(N_SAMPLES, N_SAMPLES + 4)).to_csv(new, index=False)
        full = tmp / "full.zarr"
        shutil.copytree(empty, full)
        _, extract_s = _cli(extract_args(full, model))
        grown = tmp / "grown.zarr"
        shutil.copytree(full, grown)
        _, append_s = _cli(["append", str(grown), "--samples", str(new)])
        ref_full, ref_grown = store_files(full), store_files(grown)
        rows = []
        for kind, duration in (("extract", extract_s), ("append", append_s)):
            killed = same = 0
            for k in range(TRIALS):
                store = tmp / f"{kind}{k}.zarr"
                shutil.copytree(empty if kind == "extract" else full, store)
                if kind == "extract":
                    code, _ = _cli(extract_args(store, model), kill_after=rng.uniform(0.2, 1.0) * duration)
                    _cli(extract_args(store, model))
                    ok = store_files(store) == ref_full
                else:
                    code, _ = _cli(
                        ["append", str(store), "--samples", str(new)], rng.uniform(0.2, 1.0) * duration
                    )
                    _cli(["unlock", str(store)])
                    if open_store(store).layout.n_samples == N_SAMPLES:
                        ok = store_files(store) == ref_full
                        _cli(["append", str(store), "--samples", str(new)])
                    else:
                        ok = True
                    ok = ok and store_files(store) == ref_grown
                killed += code == -9
                same += ok
                shutil.rmtree(store)
            rows.append((kind, duration, killed, same))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"{TRIALS} trials per command, each SIGKILLed after a random 20-100 % of the command's uninterrupted "
        "duration, then recovered and compared file by file with the uninterrupted store.",
        "",
        "| command | uninterrupted, s | trials killed mid-way | recovered bit for bit | recovery command |",
        "| --- | --- | --- | --- | --- |",
    ]
    recovery = {"extract": "`extract` again", "append": "`unlock`, then `append` again"}
    lines += [f"| {k} | {d:.1f} | {n}/{TRIALS} | **{s}/{TRIALS}** | {recovery[k]} |" for k, d, n, s in rows]
    return result("Randomised SIGKILL trials", lines, rows=rows)


if __name__ == "__main__":
    main()
