"""Samples tables, command lines and comparisons of whole stores shared by the extraction tests (and
by the fault-injection tests and ``benchmarks/bench_faults.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from sae_store.store.lock import LOCK_DIR

#: Samples in the test stores and samples per shard: blocks 0:4, 4:8 and a partial 8:10.
N_SAMPLES = 10
SAMPLES_PER_SHARD = 4


def samples(images_root: Path, rows: range) -> pd.DataFrame:
    """A samples table for images ``im{i}.png`` with ``i`` in ``rows``."""
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:02d}" for i in rows],
            "image": [f"im{i:02d}.png" for i in rows],
            "image_path": [str(images_root / f"im{i:02d}.png") for i in rows],
            "gender": ["male" if i % 2 else "female" for i in rows],
            "en_caption": [f"A person number {i}." for i in rows],
            "ar_caption": [f"شخص رقم {i}." for i in rows],
        }
    )


def extract_args(store: Path, model: Path, *extra: str) -> list[str]:
    """Arguments of ``sae-store extract`` of ``store`` with ``model``: CPU, float32, batches of 2, quiet."""
    return [
        "extract", str(store), "--model", str(model), "--device", "cpu", "--dtype", "float32",
        "--batch-size", "2", "--no-progress", *extra,
    ]  # fmt: skip


def cli_env() -> dict[str, str]:
    """The environment of a command run in its own process: one torch thread (as the reference stores
    were computed with), offline, quiet."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a store (lock folder aside) by relative path, with its bytes."""
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and LOCK_DIR not in f.relative_to(path).parts
    }


def assert_same_files(a: Path, b: Path) -> None:
    """Two stores are identical bit for bit: same files, same bytes."""
    fa, fb = store_files(a), store_files(b)
    assert sorted(fa) == sorted(fb), set(fa) ^ set(fb)
    different = [name for name in fa if fa[name] != fb[name]]
    assert not different, different


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a store's root group, loaded."""
    group = zarr.open_group(str(path), mode="r")
    return {name: np.asarray(arr[...]) for name, arr in group.arrays()}


def assert_same_arrays(a: Path, b: Path) -> None:
    """Two stores hold the same values in every array (NaN equal to NaN)."""
    xa, xb = arrays(a), arrays(b)
    assert sorted(xa) == sorted(xb)
    for name in xa:
        assert xa[name].shape == xb[name].shape, name
        if xa[name].dtype.kind == "f":
            np.testing.assert_array_equal(xa[name], xb[name], err_msg=name)
        else:
            assert (xa[name] == xb[name]).all(), name
