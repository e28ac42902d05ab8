"""Fixtures of the intervention tests: the tiny Gemma 3 loaded once, toy SAEs, a captioned store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from sae_store.models.loader import LoadedModel, load_model
from sae_store.models.tiny import build_tiny_gemma3

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EN_PROMPT = "Describe the person in this image in detail."
AR_PROMPT = "صف الشخص في هذه الصورة بالتفصيل."


class ToySAE(nn.Module):
    """A ReLU SAE with random weights, satisfying :class:`~sae_store.intervene.hooks.SAELike`."""

    def __init__(self, d_in: int, d_sae: int, *, seed: int = 0, layer: int | None = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.d_in, self.d_sae, self.layer = d_in, d_sae, layer
        self.W_enc = nn.Parameter(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        self.b_enc = nn.Parameter(torch.full((d_sae,), 0.05))
        self.W_dec = nn.Parameter(torch.randn(d_sae, d_in, generator=g) / d_sae**0.5)
        self.b_dec = nn.Parameter(torch.randn(d_in, generator=g) * 0.1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # The tiny model's matmuls are microseconds; on a shared 2-core machine a second intra-op thread
    # only adds spin-waiting (measured 10-40x slower forward passes under load).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 3 folder (seed 0), built once per session; read-only."""
    return build_tiny_gemma3(tmp_path_factory.mktemp("intervene-model") / "tiny-gemma3", seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> LoadedModel:
    """The tiny model on CPU in float32; tests must leave it without hooks."""
    return load_model(tiny_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def toy_sae(tiny: LoadedModel) -> ToySAE:
    """A toy SAE for layer 1 of the tiny model (256 features)."""
    return ToySAE(tiny.adapter.hidden_size, 256, seed=1, layer=1).eval().requires_grad_(False)


@pytest.fixture
def images() -> list[Image.Image]:
    """Four random RGB images."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)) for _ in range(4)]


class PerfectSAE(nn.Module):
    """A ReLU SAE that reconstructs exactly: features ``relu(x)`` and ``relu(-x)``, decoded back to ``x``."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        eye = torch.eye(d_in)
        self.d_in, self.d_sae = d_in, 2 * d_in
        self.W_enc = nn.Parameter(torch.cat([eye, -eye], dim=1))
        self.W_dec = nn.Parameter(torch.cat([eye, -eye], dim=0))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec


@pytest.fixture(scope="session")
def captioned_store(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, tiny: LoadedModel) -> Path:
    """A store of 8 demo samples (4 male, 4 female; shards of 4) with captions of 6 tokens; copy before
    changing it."""
    from sae_store.data.demo import make_demo_data
    from sae_store.data.prepare import prepare_samples
    from sae_store.extract.init import init_store
    from sae_store.intervene.config import CaptionConfig
    from sae_store.intervene.generation import caption_store
    from sae_store.store import StoreConfig

    root = tmp_path_factory.mktemp("intervene-store")
    data = make_demo_data(root / "data", n_images=12, seed=0)
    prepared = prepare_samples(data / "captions.csv", data / "images", root / "prepared")
    samples = pd.read_csv(prepared.samples_path)
    store = init_store(root / "store.zarr", samples, tiny_dir, images_dir=data / "images",
                       config=StoreConfig(samples_per_shard=4))  # fmt: skip
    caption_store(store, tiny, CaptionConfig(max_new_tokens=6, batch_size=4), progress=False)
    return store.path


@pytest.fixture
def store_copy(captioned_store: Path, tmp_path: Path) -> Path:
    """A private copy of the captioned store."""
    dst = tmp_path / "store.zarr"
    shutil.copytree(captioned_store, dst)
    return dst
