"""Synthetic stores and results for the report tests and benchmark, written by the real writers.

Results are produced by the analysis code itself (on synthetic per-sample features with planted
gender effects) and written with its own writers, so the report reads exactly the layout the
pipeline writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sae_store.analyze.config import BiasConfig
from sae_store.analyze.data import Labels, read_labels
from sae_store.analyze.results import write_analysis, write_json
from sae_store.analyze.run_bias import BIAS_JSON, run_bias
from sae_store.store import ActivationStore, ModelInfo, StoreConfig, create_store
from sae_store.store import schema as S


def make_store(
    path: Path,
    *,
    n_samples: int = 40,
    n_layers: int = 3,
    hidden: int = 16,
    samples_per_shard: int = 8,
    images_dir: Path | None = None,
    written_layers: int | None = None,
    seed: int = 0,
) -> ActivationStore:
    """A store of ``n_samples`` alternating male/female samples; activations written for the first
    ``written_layers`` layers (default all) of both languages."""
    samples = pd.DataFrame(
        {
            "sample_id": [f"s{i:04d}" for i in range(n_samples)],
            "image": [f"img{i:04d}.png" for i in range(n_samples)],
            "gender": ["male" if i % 2 == 0 else "female" for i in range(n_samples)],
            "en_caption": [f"A {'man' if i % 2 == 0 else 'woman'} in a park." for i in range(n_samples)],
            "ar_caption": [f"{'رجل' if i % 2 == 0 else 'امرأة'} في الحديقة." for i in range(n_samples)],
        }
    )
    model = ModelInfo(
        identity={"name_or_path": "synthetic-gemma3", "model_type": "gemma3"},
        n_layers=n_layers,
        hidden_size=hidden,
        prompts={
            "en": "Describe the person in this image in detail.",
            "ar": "صف الشخص في هذه الصورة بالتفصيل.",
        },
        tokens_per_language={"en": 10, "ar": 12},
        image_tokens=4,
    )
    store = create_store(
        path, samples, model, config=StoreConfig(samples_per_shard=samples_per_shard), images_dir=images_dir
    )
    rng = np.random.default_rng(seed)
    lay = store.layout
    for layer in lay.layers[: n_layers if written_layers is None else written_layers]:
        for lang in lay.languages:
            for b in store.blocks:
                n = b.stop - b.start
                values = rng.normal(size=(n, lay.max_tokens, lay.hidden_size)).astype(np.float32)
                store.write(S.ACTIVATIONS, values, start=b.start, layer=layer, language=lang)
                store.write(S.COMPLETE, np.ones(n, bool), start=b.start, layer=layer, language=lang)
    return store


def synthetic_features(
    labels: Labels,
    layers: list[int],
    languages: list[str],
    *,
    n_features: int = 64,
    n_planted: int = 6,
    seed: int = 0,
) -> xr.Dataset:
    """Per-sample feature means (sparse, non-negative) with ``n_planted`` male- and female-shifted
    features per layer whose effect grows with depth; every sample flagged encoded."""
    rng = np.random.default_rng(seed)
    n = labels.sample.size
    male = labels.gender == "male"
    shape = (len(layers), len(languages), n, n_features)
    x = rng.gamma(1.0, 1.0, size=shape) * (rng.random(shape) < 0.6)
    for i, _ in enumerate(layers):
        shift = 0.5 + 1.5 * i / max(len(layers) - 1, 1)
        x[i, :, :, :n_planted] += shift * male[None, :, None]
        x[i, :, :, n_planted : 2 * n_planted] += shift * ~male[None, :, None]
    return xr.Dataset(
        {
            "feature_mean": ((S.LAYER, S.LANGUAGE, S.SAMPLE, S.FEATURE), x.astype(np.float32)),
            S.COMPLETE: ((S.LAYER, S.LANGUAGE, S.SAMPLE), np.ones(shape[:3], bool)),
        },
        coords={
            S.LAYER: np.asarray(layers, dtype=np.int32),
            S.LANGUAGE: languages,
            S.SAMPLE: labels.sample,
            S.FEATURE: np.arange(n_features),
        },
    )


def write_bias_results(
    store: ActivationStore,
    results_dir: Path,
    *,
    n_features: int = 64,
    bootstrap: int = 50,
    permutations: int = 20,
) -> dict:
    """Run ``analyze bias`` on synthetic features of ``store`` and write its outputs; returns the payload."""
    labels = read_labels(store)
    features = synthetic_features(
        labels, list(store.layout.layers), list(store.layout.languages), n_features=n_features
    )
    run = run_bias(
        store, features, labels, BiasConfig(min_per_group=9, bootstrap=bootstrap, permutations=permutations)
    )
    write_analysis(store, "bias", run.dataset)
    write_json(results_dir, BIAS_JSON, run.payload)
    return run.payload
