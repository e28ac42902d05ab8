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
    write_lens(store, n_features=N_FEATURES)
    from sae_store.autointerp.config import ExplainConfig
    from sae_store.autointerp.run import explain

    # explanations of two features of layer 2 through the rule-based loopback endpoint
    explain(
        store.path, str(root / "saes"), ExplainConfig(features="2:3,2:0", n_held=4, cache=str(root / "cache"))
    )
    return store


#: Vocabulary of the synthetic logit lens, and its gender words (text, language, gender).
LENS_VOCAB = 1000
LENS_TERMS = (("man", "en", "male"), ("woman", "en", "female"), ("رجل", "ar", "male"))


def write_lens(store: ActivationStore, *, n_features: int, k: int = 5) -> None:
    """``analysis/logit_lens`` of every layer with known token ids: feature f of layer L promotes tokens
    100 L + f + r (r = 0..k-1) and suppresses 900 - f - r (modulo the vocabulary, :data:`LENS_VOCAB`);
    term w ranks (f + w) % 50 + 1."""
    import numpy as np
    import xarray as xr

    from sae_store.analyze.results import write_analysis

    layers = list(store.layout.layers)
    r = np.arange(k)
    f = np.arange(n_features)[:, None]
    promoted = np.stack([(100 * la + f + r) % LENS_VOCAB for la in layers]).astype(np.int32)
    suppressed = np.stack([(900 - f - r + 0 * la) % LENS_VOCAB for la in layers]).astype(np.int32)
    logits = np.broadcast_to(np.linspace(3.0, 1.0, k, dtype=np.float32), promoted.shape)
    w = np.arange(len(LENS_TERMS))
    ranks = np.stack([(f + w) % 50 + 1 for _ in layers]).astype(np.int32)
    dims, tdims = ("layer", "feature", "rank"), ("layer", "feature", "term")
    ds = xr.Dataset(
        {
            "promoted_id": (dims, promoted), "promoted_logit": (dims, logits.copy()),
            "suppressed_id": (dims, suppressed), "suppressed_logit": (dims, -logits),
            "term_rank": (tdims, ranks), "term_logit": (tdims, -ranks.astype(np.float32) / 10),
        },
        coords={
            "layer": np.array(layers, dtype=np.int32), "feature": np.arange(n_features, dtype=np.int64),
            "term_text": ("term", np.array([t[0] for t in LENS_TERMS], dtype=object)),
            "term_language": ("term", np.array([t[1] for t in LENS_TERMS], dtype=object)),
            "term_gender": ("term", np.array([t[2] for t in LENS_TERMS], dtype=object)),
        },
        attrs={"config": {"lens_k": k}, "vocab_size": LENS_VOCAB},
    )  # fmt: skip
    write_analysis(store, "logit_lens", ds)


@pytest.fixture(scope="session")
def explorer(full_store: ActivationStore) -> Explorer:
    return Explorer(full_store.path)


@pytest.fixture(scope="session")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    """A store with activations only: no features, SAEs or results (read-only)."""
    return make_store(tmp_path_factory.mktemp("explore-bare") / "store.zarr", n_samples=16)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ActivationStore:
    """The demo's data (12 images) extracted with the tiny Gemma 3, a random TopK SAE per layer in
    ``saes/`` beside the store, and its features encoded: what the test box runs on (read-only)."""
    import pandas as pd

    from sae_store.data.demo import make_demo_data
    from sae_store.data.prepare import prepare_samples
    from sae_store.extract.config import ExtractConfig
    from sae_store.extract.init import init_store
    from sae_store.extract.run import run_extraction
    from sae_store.store import StoreConfig
    from sae_store.train.encode import encode_features

    root = tmp_path_factory.mktemp("explore-tiny")
    data = make_demo_data(root / "data", n_images=12, seed=0)
    prepared = prepare_samples(data / "captions.csv", data / "images", root / "prepared")
    store = init_store(
        root / "store.zarr",
        pd.read_csv(prepared.samples_path),
        tiny_model_dir,
        images_dir=data / "images",
        config=StoreConfig(samples_per_shard=4, precision="fp32"),
    )
    run_extraction(store.path, tiny_model_dir, ExtractConfig(), device="cpu", dtype="float32")
    layers = list(store.layout.layers)
    write_sae_weights(root / "saes", layers, d_in=store.layout.hidden_size, d_sae=N_FEATURES)
    encode_features(store, {la: root / "saes" / f"layer_{la}" for la in layers}, progress=False)
    return store
