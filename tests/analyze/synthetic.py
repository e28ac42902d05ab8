"""Synthetic data with known answers for the analysis tests.

- :func:`planted_matrix`: per-sample feature values (zero-inflated, heavy-tailed) where a known set
  of features is shifted by a stated Cohen's d between the genders.
- :func:`build_store`: a small store with activations whose image tokens carry planted gender
  directions in known grid cells, a ReLU SAE folder (SAELens layout), and a features group encoded
  from those activations with that SAE, exactly as ``sae-store encode`` would lay it out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image
from safetensors.numpy import save_file

from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, ModelInfo, StoreConfig, create_store

IMAGE_TOKENS = 16  # a 4 x 4 grid
TOKENS = {"en": 22, "ar": 24}
MALE_PLANTED = (0, 1, 2)
FEMALE_PLANTED = (3, 4)
MALE_CELLS = (0, 1, 4, 5)  # upper-left 2 x 2 of the grid
FEMALE_CELLS = (10, 11, 14, 15)  # lower-right 2 x 2


def zero_inflated(rng: np.random.Generator, shape: tuple[int, ...], active: float = 0.4) -> np.ndarray:
    """Non-negative values, exactly 0 with probability 1 - ``active``, lognormal otherwise."""
    return np.where(rng.random(shape) < active, rng.lognormal(0.0, 0.5, shape), 0.0)


def population_sd(active: float = 0.4, sigma: float = 0.5) -> float:
    """SD of :func:`zero_inflated` values (a Bernoulli-lognormal mixture)."""
    m1 = np.exp(sigma**2 / 2)
    m2 = np.exp(2 * sigma**2)
    return float(np.sqrt(active * m2 - (active * m1) ** 2))


def planted_matrix(
    n_per_group: int, n_features: int, n_planted: int, effect: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_NF, is_male, planted): features ``0..n_planted-1`` are shifted by ``effect`` population SDs.

    The first half of the planted features is higher for men, the second half for women.
    """
    rng = np.random.default_rng(seed)
    is_male = rng.permutation(np.repeat([True, False], n_per_group))
    x = zero_inflated(rng, (2 * n_per_group, n_features))
    shift = effect * population_sd()
    half = n_planted // 2
    x[np.ix_(is_male, np.arange(half))] += shift
    x[np.ix_(~is_male, np.arange(half, n_planted))] += shift
    return x, is_male, np.arange(n_planted)


@dataclass(frozen=True)
class SyntheticSae:
    """A ReLU SAE in the SAELens parameter layout."""

    W_enc: np.ndarray
    W_dec: np.ndarray
    b_enc: np.ndarray
    b_dec: np.ndarray

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.maximum((x - self.b_dec) @ self.W_enc + self.b_enc, 0.0)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        d_in, d_sae = self.W_enc.shape
        cfg = {
            "architecture": "standard",
            "d_in": d_in,
            "d_sae": d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
        }
        (folder / "cfg.json").write_text(json.dumps(cfg))
        tensors = {
            k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
            for k in ("W_enc", "W_dec", "b_enc", "b_dec")
        }
        save_file(tensors, str(folder / "sae_weights.safetensors"))
        return folder


def make_sae(d_in: int, d_sae: int, seed: int) -> SyntheticSae:
    rng = np.random.default_rng(seed)
    W_dec = rng.normal(size=(d_sae, d_in))
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    return SyntheticSae(W_dec.T.copy(), W_dec, np.full(d_sae, -1.5), np.zeros(d_in))


def samples(n_male: int, n_female: int, n_unknown: int, n_ambiguous: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genders = rng.permutation(
        ["male"] * n_male + ["female"] * n_female + ["unknown"] * n_unknown + ["ambiguous"] * n_ambiguous
    )
    words = {
        "male": ("man", "رجل"),
        "female": ("woman", "امرأة"),
        "unknown": ("person", "شخص"),
        "ambiguous": ("man and a woman", "رجل وامرأة"),
    }
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(len(genders))],
            "image": [f"img_{i:03d}.png" for i in range(len(genders))],
            "gender": genders,
            "en_caption": [f"A {words[g][0]} in a park." for g in genders],
            "ar_caption": [f"{words[g][1]} في الحديقة." for g in genders],
        }
    )


def roles(language: str, max_tokens: int) -> np.ndarray:
    """Token roles of one sample: BOS, the image grid, text, then padding up to ``max_tokens``."""
    r = np.full(max_tokens, int(TokenRole.PAD), dtype=np.int8)
    r[0] = TokenRole.SPECIAL
    r[1 : 1 + IMAGE_TOKENS] = TokenRole.IMAGE
    r[1 + IMAGE_TOKENS : TOKENS[language]] = TokenRole.TEXT
    return r


@dataclass(frozen=True)
class Built:
    store: ActivationStore
    sae_dirs: dict[int, Path]
    saes: dict[int, SyntheticSae]
    images_dir: Path


def build_store(
    tmp: Path,
    *,
    n_male: int = 18,
    n_female: int = 18,
    n_unknown: int = 2,
    n_ambiguous: int = 2,
    layers: tuple[int, ...] = (0, 1),
    languages: tuple[str, ...] = ("en", "ar"),
    hidden: int = 16,
    d_sae: int = 32,
    amplitude: float = 4.0,
    encode_layers: tuple[int, ...] | None = None,
    seed: int = 0,
) -> Built:
    """A store whose planted features (0-2 male, 3-4 female) fire in known image-grid cells."""
    rng = np.random.default_rng(seed)
    table = samples(n_male, n_female, n_unknown, n_ambiguous, seed)
    images_dir = tmp / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for name in table["image"]:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images_dir / name)
    model = ModelInfo(
        identity={"name_or_path": "synthetic", "model_type": "gemma3"},
        n_layers=max(layers) + 1,
        hidden_size=hidden,
        prompts={lang: f"prompt {lang}" for lang in languages},
        tokens_per_language={lang: TOKENS[lang] for lang in languages},
        image_tokens=IMAGE_TOKENS,
    )
    store = create_store(
        tmp / "store.zarr",
        table,
        model,
        layers=list(layers),
        languages=list(languages),
        config=StoreConfig(samples_per_shard=8, precision="fp32"),
        images_dir=images_dir,
    )
    n, T = len(table), store.layout.max_tokens
    gender = table["gender"].to_numpy()
    saes = {layer: make_sae(hidden, d_sae, seed + 100 + layer) for layer in layers}
    role_arr = {lang: np.tile(roles(lang, T), (n, 1)) for lang in languages}
    feats = np.zeros((3, len(layers), len(languages), n, d_sae), dtype=np.float32)
    for j, lang in enumerate(languages):
        for b in store.blocks:
            store.write("token_role", role_arr[lang][b.start : b.stop], start=b.start, language=lang)
            store.write(
                "input_ids",
                np.tile(np.arange(T, dtype=np.int32) + 100, (b.stop - b.start, 1)),
                start=b.start,
                language=lang,
            )
            store.write(
                "n_tokens",
                np.full(b.stop - b.start, TOKENS[lang], dtype=np.int32),
                start=b.start,
                language=lang,
            )
        for i, layer in enumerate(layers):
            sae = saes[layer]
            acts = rng.normal(0.0, 0.3, (n, T, hidden))
            for cells, planted, who in (
                (MALE_CELLS, MALE_PLANTED, "male"),
                (FEMALE_CELLS, FEMALE_PLANTED, "female"),
            ):
                rows = np.flatnonzero(gender == who)
                for f in planted:
                    for c in cells:
                        acts[rows, 1 + c] += amplitude * sae.W_dec[f]
            acts[:, TOKENS[lang] :] = 0.0
            for b in store.blocks:
                store.write(
                    "activations",
                    acts[b.start : b.stop].astype(np.float32),
                    start=b.start,
                    layer=layer,
                    language=lang,
                )
                store.write(
                    "complete", np.ones(b.stop - b.start, bool), start=b.start, layer=layer, language=lang
                )
            lat = sae.encode(acts)
            keep = np.isin(role_arr[lang], (TokenRole.IMAGE, TokenRole.TEXT))[..., None]
            count = keep.sum(axis=1)
            feats[0, i, j] = (lat * keep).sum(axis=1) / count
            feats[1, i, j] = (lat * keep).max(axis=1)
            feats[2, i, j] = ((lat > 0) & keep).sum(axis=1) / count
    write_features(store, feats, encode_layers=encode_layers)
    sae_dirs = {layer: saes[layer].save(tmp / "saes" / f"layer_{layer}") for layer in layers}
    return Built(store, sae_dirs, saes, images_dir)


def write_features(
    store: ActivationStore,
    feats: np.ndarray,
    *,
    encode_layers: tuple[int, ...] | None = None,
    complete: np.ndarray | None = None,
) -> None:
    """Add a features group (mean, max, frac stacked on axis 0) laid out as ``sae-store encode`` writes it."""
    layout = store.layout
    S = layout.samples_per_shard
    if complete is None:
        complete = np.ones(feats.shape[1:4], dtype=bool)
        if encode_layers is not None:
            complete[[i for i, layer in enumerate(layout.layers) if layer not in encode_layers]] = False
    dims = ("layer", "language", "sample", "feature")
    ds = xr.Dataset(
        {
            "feature_mean": (dims, feats[0]),
            "feature_max": (dims, feats[1]),
            "feature_frac": (dims, feats[2]),
            "complete": (dims[:3], complete),
        },
        coords={
            "layer": np.asarray(layout.layers, dtype=np.int32),
            "language": np.array(layout.languages, dtype=object),
            "sample": store.dataset()["sample"].values,
            "feature": np.arange(feats.shape[-1], dtype=np.int32),
        },
        attrs={"roles": ["image", "text"]},
    )
    F = feats.shape[-1]
    encoding = {name: {"chunks": (1, 1, S, F)} for name in ("feature_mean", "feature_max", "feature_frac")}
    encoding["complete"] = {"chunks": (1, 1, S)}
    encoding["sample"] = {"chunks": (S,)}
    ds.to_zarr(store.path, group="features", mode="w", encoding=encoding, consolidated=True)
