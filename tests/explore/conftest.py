"""Fixtures of the explorer tests: a store with every result and real SAE weights, and a bare one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sae_store.explore import Explorer
from sae_store.store import ActivationStore
from sae_store.train.config import SaeConfig
from sae_store.train.formats import save_sae
from sae_store.train.sae import build_sae
from tests.report.synthetic import make_store, write_evaluation, write_results

N_FEATURES = 64


def write_sae_weights(saes_dir: Path, layers: list[int], *, d_in: int, d_sae: int) -> None:
    """A random TopK SAE per layer, saved as training saves it (weights + cfg.json)."""
    for layer in layers:
        sae = build_sae(SaeConfig(architecture="topk", d_in=d_in, d_sae=d_sae, k=8), seed=layer)
        with torch.no_grad():
            sae.b_enc.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(layer))
        val = {"explained_variance": 0.7 + 0.05 * layer, "l0": 8.0, "dead_fraction": 0.01 * layer}
        save_sae(sae, saes_dir / f"layer_{layer}", provenance={"layer": layer, "metrics": {"val": val}})


@pytest.fixture(scope="session")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    """A complete store with every analysis and intervention result, real SAEs in ``saes/`` and
    images beside it (read-only)."""
    root = tmp_path_factory.mktemp("explore-full")
    store = make_store(root / "store.zarr")
    write_results(store, root / "results", n_features=N_FEATURES, inspect=False)
    write_sae_weights(
        root / "saes", list(store.layout.layers), d_in=store.layout.hidden_size, d_sae=N_FEATURES
    )
    write_evaluation(store, root / "saes", root / "results")
    return store


@pytest.fixture(scope="session")
def explorer(full_store: ActivationStore) -> Explorer:
    return Explorer(full_store.path)


@pytest.fixture(scope="session")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    """A store with activations only: no features, SAEs or results (read-only)."""
    return make_store(tmp_path_factory.mktemp("explore-bare") / "store.zarr", n_samples=16)
