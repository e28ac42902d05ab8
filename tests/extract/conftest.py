"""Fixtures of the extraction tests: the tiny model loaded once, real images, store templates."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sae_store.extract.config import ExtractConfig
from sae_store.extract.init import init_store
from sae_store.extract.run import extract_activations
from sae_store.models.loader import LoadedModel, load_model
from sae_store.store import ActivationStore, StoreConfig, open_store

from .helpers import N_SAMPLES, SAMPLES_PER_SHARD, samples

MakeStore = Callable[..., ActivationStore]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: tiny matmuls are several times faster so on a shared machine, and
    stores compared bit for bit (with subprocesses run with OMP_NUM_THREADS=1) share the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def loaded(tiny_model_dir: Path) -> LoadedModel:
    """The session's tiny Gemma 3 on CPU in float32; tests that hook it must remove their hooks."""
    return load_model(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def images_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of random RGB images of assorted sizes (the processor resizes them)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for i in range(N_SAMPLES + 6):
        h, w = rng.integers(20, 70, size=2)
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(root / f"im{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def templates(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, images_root: Path
) -> dict[str, Path]:
    """Empty stores of the session's samples, one per precision, to be copied (never written)."""
    root = tmp_path_factory.mktemp("templates")
    table = samples(images_root, range(N_SAMPLES))
    return {
        p: init_store(
            root / f"{p}.zarr",
            table,
            tiny_model_dir,
            config=StoreConfig(samples_per_shard=SAMPLES_PER_SHARD, precision=p),
        ).path
        for p in ("bf16", "fp32")
    }


@pytest.fixture
def make_store(tmp_path: Path, templates: dict[str, Path]) -> MakeStore:
    """``make_store(precision="bf16")``: a fresh copy of an empty template store."""
    counter = iter(range(1000))

    def make(precision: str = "bf16") -> ActivationStore:
        dest = tmp_path / f"store{next(counter)}.zarr"
        shutil.copytree(templates[precision], dest)
        return open_store(dest)

    return make


@pytest.fixture(scope="session")
def reference(
    tmp_path_factory: pytest.TempPathFactory, templates: dict[str, Path], loaded: LoadedModel
) -> Path:
    """The bf16 template filled by one uninterrupted in-process extraction (read-only)."""
    dest = tmp_path_factory.mktemp("reference") / "store.zarr"
    shutil.copytree(templates["bf16"], dest)
    with one_thread():
        extract_activations(open_store(dest), loaded, ExtractConfig(batch_size=2, progress=False))
    return dest
