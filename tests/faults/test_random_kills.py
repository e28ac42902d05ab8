"""Randomised SIGKILL trials: the real command killed at a random moment, recovered, compared bit for bit.

A few trials run here; ``benchmarks/bench_faults.py`` runs many more.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from sae_store.extract.append import append_samples
from sae_store.models.loader import LoadedModel
from sae_store.store import open_store
from sae_store.store.lock import LOCK_DIR
from sae_store_cli.main import main
from tests.extract.helpers import N_SAMPLES, assert_same_files, extract_args, samples

from .helpers import start


def _duration(args: list[str]) -> float:
    """Seconds a whole unkilled run of ``sae-store ARGS`` takes (kill times are drawn within it)."""
    t0 = time.perf_counter()
    assert _kill_after(args, 600.0) == 0
    return time.perf_counter() - t0


def _kill_after(args: list[str], seconds: float) -> int:
    """Run ``sae-store ARGS``, SIGKILL it after ``seconds``; its return code (-9 if it was killed)."""
    proc = start(args)
    try:
        proc.wait(timeout=seconds)
    except Exception:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    return proc.returncode


@pytest.mark.slow
def test_random_kills_of_extract_and_append_always_recover(
    make_store, loaded: LoadedModel, tiny_model_dir: Path, reference: Path, images_root: Path, tmp_path: Path
) -> None:
    rng = random.Random(12)
    table = tmp_path / "new.csv"
    samples(images_root, range(N_SAMPLES, N_SAMPLES + 4)).to_csv(table, index=False)
    grown = tmp_path / "grown.zarr"
    shutil.copytree(reference, grown)
    append_samples(grown, samples(images_root, range(N_SAMPLES, N_SAMPLES + 4)))
    codes = []
    whole = _duration(extract_args(make_store().path, tiny_model_dir))
    for _ in range(2):  # extraction: kill somewhere between loading the model and the last block
        store = make_store().path
        t0 = time.perf_counter()
        codes.append(_kill_after(extract_args(store, tiny_model_dir), rng.uniform(0.3, 0.95) * whole))
        assert main(extract_args(store, tiny_model_dir)) == 0, time.perf_counter() - t0
        assert_same_files(store, reference)
        assert not (store / LOCK_DIR).exists()  # the killed run's claims are gone with the resumed run
    shutil.copytree(reference, tmp_path / "timed.zarr")
    whole = _duration(["append", str(tmp_path / "timed.zarr"), "--samples", str(table)])
    for k in range(3):  # append: kill anywhere; unlock, append again
        store = tmp_path / f"append{k}.zarr"
        shutil.copytree(reference, store)
        codes.append(
            _kill_after(["append", str(store), "--samples", str(table)], rng.uniform(0.2, 0.95) * whole)
        )
        assert main(["unlock", str(store)]) == 0
        if open_store(store).layout.n_samples == N_SAMPLES:
            assert_same_files(store, reference)
            assert main(["append", str(store), "--samples", str(table)]) == 0
        assert_same_files(store, grown)
    assert -9 in codes  # at least some trials really were killed mid-way
