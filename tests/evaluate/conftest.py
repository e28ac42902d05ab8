"""Fixtures of the evaluation tests: an extracted store of demo images (tiny Gemma 3) and SAE folders
whose behaviour is known by construction (identity, zero, a perturbed TopK SAE)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from sae_store.train.config import SaeConfig
from sae_store.train.formats import save_sae
from sae_store.train.sae import SparseAutoencoder, build_sae
from tests.extract.conftest import one_thread

#: Layers extracted into the test store (of the tiny model's 4).
LAYERS = (1, 2)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def extracted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A store of 14 demo samples (shards of 4), layers 1 and 2 extracted in both languages; copy it
    before writing into it (:func:`store_copy`)."""
    from sae_store.data.demo import make_demo_data
    from sae_store.data.prepare import prepare_samples
    from sae_store.extract.config import ExtractConfig
    from sae_store.extract.init import init_store
    from sae_store.extract.run import extract_activations
    from sae_store.models.loader import load_model
    from sae_store.store import StoreConfig

    root = tmp_path_factory.mktemp("evaluate-store")
    data = make_demo_data(root / "data", n_images=20, seed=0)
    prepared = prepare_samples(data / "captions.csv", data / "images", root / "prepared")
    samples = pd.read_csv(prepared.samples_path)
    config = StoreConfig(samples_per_shard=4, precision="fp32")
    store = init_store(
        root / "store.zarr", samples, tiny_model_dir, layers=LAYERS, images_dir=data / "images", config=config
    )
    with one_thread():
        loaded = load_model(tiny_model_dir, device="cpu", dtype="float32")
        extract_activations(store, loaded, ExtractConfig(batch_size=4, progress=False))
    return store.path


@pytest.fixture
def store_copy(extracted: Path, tmp_path: Path) -> Path:
    """A private copy of the extracted store."""
    return Path(shutil.copytree(extracted, tmp_path / "store.zarr"))


def identity_sae(d: int) -> SparseAutoencoder:
    """The identity as a ReLU SAE without sparsity: W_enc = [I, -I], W_dec = [I; -I], zero biases, so
    the latents are relu(x) and relu(-x) (latent j < d fires where x_j > 0, latent d + j where x_j < 0)
    and the reconstruction is x."""
    sae = build_sae(SaeConfig(architecture="relu", d_in=d, d_sae=2 * d))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def zero_sae(d: int, *, seed: int) -> SparseAutoencoder:
    """A ReLU SAE (128 random latents) whose decoder and decoder bias are zero: reconstruction 0."""
    sae = build_sae(SaeConfig(architecture="relu", d_in=d, d_sae=128), seed=seed)
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.zero_()
    return sae


def _save(sae: torch.nn.Module, folder: Path) -> Path:
    save_sae(sae, folder)  # type: ignore[arg-type]
    return folder


@pytest.fixture(scope="session")
def sae_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SAE folders (layer_<L>/ for every extracted layer) by kind:

    - ``identity``: :func:`identity_sae` (reconstruction x);
    - ``zero``: :func:`zero_sae` (reconstruction 0);
    - ``topk``: a TopK SAE (k=8, 256 latents) with perturbed random weights.
    """
    root = tmp_path_factory.mktemp("evaluate-saes")
    d = 64
    out = {}
    for kind in ("identity", "zero", "topk"):
        for layer in LAYERS:
            if kind == "identity":
                sae = identity_sae(d)
            elif kind == "zero":
                sae = zero_sae(d, seed=layer)
            else:
                sae = build_sae(SaeConfig(architecture="topk", d_in=d, d_sae=256, k=8), seed=layer)
                with torch.no_grad():
                    gen = torch.Generator().manual_seed(layer)
                    for p in sae.parameters():
                        p.add_(0.05 * torch.randn(p.shape, generator=gen))
            _save(sae, root / kind / f"layer_{layer}")
        out[kind] = root / kind
    return out
