"""Synthetic stores and results for the report tests, notebooks tests and benchmark.

Results are produced by the analysis and intervention code itself (on synthetic per-sample features
with planted gender effects, a random linear "SAE" and made-up intervention effects) and written by
their own writers, so the report reads exactly the layout the pipeline writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from PIL import Image
from safetensors.torch import save_file

from sae_store.analyze.config import BiasConfig, CrossLayerConfig, CrossLingualConfig, InspectConfig
from sae_store.analyze.data import open_features, open_inputs
from sae_store.analyze.pipeline import (
    bias_step,
    crosslayer_step,
    crosslingual_step,
    interpret_step,
    qualitative_step,
    top_samples_step,
    visual_step,
)
from sae_store.intervene.config import InterventionConfig
from sae_store.intervene.experiment import LanguageEffects, LayerResult
from sae_store.intervene.metrics import SpliceQuality
from sae_store.intervene.results import result_key, summarise, to_dataset, write_cross_layer, write_result
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, ModelInfo, StoreConfig, create_store, groups
from sae_store.store import schema as S
from sae_store.store.results import Labels, read_labels
from sae_store.store.schema import FEATURE_FRAC, FEATURE_MAX, FEATURE_MEAN, FEATURES, TOKENS_USED
from sae_store.train.folder import WEIGHTS_FILE

IMAGE_TOKENS = 16  # a 4 x 4 grid of image tokens
TOKENS = {"en": IMAGE_TOKENS + 4, "ar": IMAGE_TOKENS + 6}


def _write_images(folder: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = np.full((32, 32, 3), rng.integers(120, 230, size=3), dtype=np.uint8)
        im[8:28, 10:22] = (40, 70, 200) if i % 2 == 0 else (200, 40, 40)  # a "shirt"
        Image.fromarray(im).save(folder / f"img{i:04d}.png")


def make_store(
    path: Path,
    *,
    n_samples: int = 40,
    n_layers: int = 3,
    hidden: int = 16,
    samples_per_shard: int = 8,
    written_layers: int | None = None,
    with_images: bool = True,
    seed: int = 0,
) -> ActivationStore:
    """A store of ``n_samples`` alternating male/female samples with token roles, images beside it,
    and activations written for the first ``written_layers`` layers (default all) of both languages."""
    images = path.parent / "images"
    if with_images:
        _write_images(images, n_samples, seed)
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
        tokens_per_language=TOKENS,
        image_tokens=IMAGE_TOKENS,
    )
    store = create_store(
        path, samples, model, config=StoreConfig(samples_per_shard=samples_per_shard), images_dir=images
    )
    rng = np.random.default_rng(seed)
    lay = store.layout
    for lang in lay.languages:
        roles = np.full(lay.max_tokens, int(TokenRole.PAD), dtype=np.int8)
        roles[0] = TokenRole.SPECIAL
        roles[1 : 1 + IMAGE_TOKENS] = TokenRole.IMAGE
        roles[1 + IMAGE_TOKENS : TOKENS[lang]] = TokenRole.TEXT
        for b in store.blocks:
            n = b.stop - b.start
            store.write(S.TOKEN_ROLE, np.tile(roles, (n, 1)), start=b.start, language=lang)
            store.write(S.N_TOKENS, np.full(n, TOKENS[lang], dtype=np.int32), start=b.start, language=lang)
            store.write(
                S.INPUT_IDS,
                rng.integers(5, 200, size=(n, lay.max_tokens), dtype=np.int32),
                start=b.start,
                language=lang,
            )
    for layer in lay.layers[: n_layers if written_layers is None else written_layers]:
        for lang in lay.languages:
            for b in store.blocks:
                n = b.stop - b.start
                values = rng.normal(size=(n, lay.max_tokens, lay.hidden_size)).astype(np.float32)
                store.write(S.ACTIVATIONS, values, start=b.start, layer=layer, language=lang)
                store.write(S.COMPLETE, np.ones(n, bool), start=b.start, layer=layer, language=lang)
    return store


def create_features_group(store: ActivationStore, n_features: int) -> None:
    """Create the empty ``features`` group of ``n_features`` features (image and text tokens), laid out as
    ``sae-store encode`` creates it, for the caller to fill."""
    attrs = {"roles": ["image", "text"], "d_sae": n_features, "n_samples": store.layout.n_samples}
    groups.create_features_group(store, n_features, ["image", "text"], attrs)


def drop_role_arrays(store: ActivationStore) -> None:
    """Make the ``features`` group as ``encode`` wrote it before the per-role arrays existed."""
    for name in (S.ROLE_FRAC, S.ROLE_TOKENS, S.ROLE, f"{S.ROLE}{S.CODE_SUFFIX}"):
        shutil.rmtree(store.path / FEATURES / name)
    store.consolidate()


def write_features(
    store: ActivationStore, *, n_features: int = 64, n_planted: int = 6, seed: int = 0
) -> xr.Dataset:
    """Write a ``features`` group (the layout ``sae-store encode`` writes) of per-sample feature
    statistics with ``n_planted`` male- and ``n_planted`` female-shifted features whose effect grows
    with depth; returns it opened as the analyses open it."""
    rng = np.random.default_rng(seed)
    lay = store.layout
    male = read_labels(store).gender == "male"
    create_features_group(store, n_features)
    for i, layer in enumerate(lay.layers):
        shift = 0.5 + 1.5 * i / max(len(lay.layers) - 1, 1)
        for lang in lay.languages:
            x = rng.gamma(1.0, 1.0, size=(lay.n_samples, n_features)) * (
                rng.random((lay.n_samples, n_features)) < 0.6
            )
            x[:, :n_planted] += shift * male[:, None]
            x[:, n_planted : 2 * n_planted] += shift * ~male[:, None]
            # 20 tokens (16 image, 4 text), active on 10 where x > 0: even features on 8 image and 2 text
            # tokens, odd features on 10 image tokens and no text token
            odd = np.arange(n_features) % 2 == 1
            role_frac = np.stack([np.where(odd, 10 / 16, 0.5), np.where(odd, 0.0, 0.5)])
            values = {
                FEATURE_MEAN: x,
                FEATURE_MAX: 2 * x,
                FEATURE_FRAC: (x > 0) * 0.5,
                S.ROLE_FRAC: (x > 0)[:, None, :] * role_frac[None],
                S.ROLE_TOKENS: np.tile(np.array([16, 4], np.int32), (lay.n_samples, 1)),
            }
            for name, v in values.items():
                dtype = np.int32 if name == S.ROLE_TOKENS else np.float32
                store.write(name, v.astype(dtype), start=0, layer=layer, language=lang, group=FEATURES)
            store.write(
                TOKENS_USED,
                np.full(lay.n_samples, 20, np.int32),
                start=0,
                layer=layer,
                language=lang,
                group=FEATURES,
            )
            store.write(
                S.COMPLETE, np.ones(lay.n_samples, bool), start=0, layer=layer, language=lang, group=FEATURES
            )
    store.consolidate()
    return open_features(store)


def write_saes(saes_dir: Path, layers: list[int], *, d_in: int, d_sae: int, steps: int = 5) -> None:
    """SAE folders with the ``cfg.json`` provenance and ``metrics.jsonl`` that training writes (and
    weights of the right shapes: a folder without them is not an SAE)."""
    for layer in layers:
        folder = saes_dir / f"layer_{layer}"
        folder.mkdir(parents=True, exist_ok=True)
        shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
        save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(folder / WEIGHTS_FILE))
        val = {
            "tokens": 1000,
            "mse": 0.1,
            "fvu": 0.3 - 0.05 * layer,
            "explained_variance": 0.7 + 0.05 * layer,
            "l0": 20.0 + layer,
            "dead_fraction": 0.01 * layer,
            "dead_fraction_train_window": 0.02 * layer,
            "dead_window_tokens": 200_000,
            "mean_log10_density": -2.0,
        }
        cfg = {
            "architecture": "topk",
            "d_in": d_in,
            "d_sae": d_sae,
            "k": 16,
            "sae_store": {"architecture": "topk", "layer": layer, "metrics": {"val": val}},
        }
        (folder / "cfg.json").write_text(json.dumps(cfg))
        rows = [
            {"step": s * 10, "fvu": 1.0 / (s + 1), "l0": 40.0 - s, "dead_fraction": 0.0}
            for s in range(1, steps)
        ]
        rows.append({"step": steps * 10, "split": "val", **val})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _interventions(
    store: ActivationStore, results_dir: Path, labels: Labels, rng: np.random.Generator, layers: list[int]
) -> None:
    genders = labels.gender
    n = genders.size
    male = genders == "male"
    for layer in layers:
        for label, mode in (("male_biased", "ablate"), ("male_biased", "amplify")):
            config = InterventionConfig(
                mode=mode, n_controls=10, dose_alphas=(0.5, 1.0, 2.0, 4.0), regenerate=False
            )
            langs = {}
            for lang in store.layout.languages:
                effect = rng.normal(-0.3 * (layer + 1) * male, 0.2, n)
                doses = np.stack([rng.normal((a - 1) * 0.2 * male, 0.1, n) for a in config.dose_alphas])
                langs[lang] = LanguageEffects(
                    baseline_score=rng.normal(0, 1, n),
                    effect=effect,
                    control_effects=rng.normal(0, 0.1, (10, n)),
                    dose_effects=doses if mode == "amplify" else np.zeros((0, n)),
                    splice=SpliceQuality(2.0, 2.2, 6.0, 0.95 - 0.05 * layer, 0.05, 1.5, 0.96, 500),
                )
            result = LayerResult(
                layer, (0, 1, 2), [tuple(rng.choice(64, 3, replace=False)) for _ in range(10)], config, langs
            )
            baseline = {lang: (rng.integers(0, 3, n), rng.integers(0, 3, n)) for lang in langs}
            summary = summarise(result, genders, baseline, n_boot=200)
            ds = to_dataset(result, labels.sample, genders, summary)
            write_result(store, results_dir, result_key(label, mode), ds, summary)
    write_cross_layer(results_dir)


def write_results(
    store: ActivationStore,
    results_dir: Path,
    *,
    saes_dir: Path | None = None,
    n_features: int = 64,
    bootstrap: int = 50,
    permutations: int = 20,
    inspect: bool = True,
    interventions: bool = True,
    intervention_layers: list[int] | None = None,
    probe_folds: int = 3,
    seed: int = 0,
) -> None:
    """Write a features group, run every analysis step on it (as ``sae-store analyze`` does), and write
    SAE folders and intervention results: the store's ``analysis`` group and JSON in ``results_dir``.
    ``intervention_layers`` (default: every layer) and ``probe_folds`` make many-layer stores quicker."""
    write_features(store, n_features=n_features, seed=seed)
    inp = open_inputs(store.path)
    layers = list(store.layout.layers)
    bias_step(inp, BiasConfig(min_per_group=9, bootstrap=bootstrap, permutations=permutations), results_dir)
    crosslingual_step(inp, CrossLingualConfig(min_per_group=9, top_k=10, permutations=50), results_dir)
    crosslayer_step(inp, CrossLayerConfig(min_per_group=9, folds=probe_folds), results_dir)
    rng = np.random.default_rng(seed)
    if inspect:
        w_enc = rng.normal(size=(store.layout.hidden_size, n_features)).astype(np.float32)
        encoders = {layer: (lambda x, w=w_enc: np.maximum(x @ w, 0.0)) for layer in layers}
        config = InspectConfig(n_features=2, top_k=4, image_size=32, n_samples=3, features_per_sample=2)
        # the deepest layer only: each inspected feature draws a PNG, which is slow
        tops = top_samples_step(inp, config, encoders=encoders, layers=layers[-1:])
        interpret_step(inp, tops, config, results_dir, decode=None)
        visual_step(inp, tops, config, results_dir)
        qualitative_step(inp, config, results_dir, layers=layers[-1:])
    if saes_dir is not None:
        write_saes(saes_dir, layers, d_in=store.layout.hidden_size, d_sae=n_features)
        write_evaluation(store, saes_dir, results_dir)
        if inspect:  # explanations through the rule-based loopback endpoint
            from sae_store.autointerp.config import ExplainConfig
            from sae_store.autointerp.run import explain

            top = f"{layers[-1]}:0,{layers[-1]}:1"
            explain(
                store.path,
                str(saes_dir),
                ExplainConfig(features=top, n_held=4, cache=str(results_dir / "cache")),
            )
    if interventions:
        _interventions(store, results_dir, inp.labels, rng, intervention_layers or layers)


def write_evaluation(store: ActivationStore, saes_dir: Path, results_dir: Path) -> None:
    """``sae-store evaluate`` of ``saes_dir`` on every sample (the store has no model: stored metrics and
    probes only)."""
    from sae_store.evaluate import EvaluateConfig, evaluate_store

    config = EvaluateConfig(samples="all", behaviour=False, folds=2, probe_k=(1, 2))
    evaluate_store(store, [str(saes_dir)], config, out_dir=results_dir / "evaluate", progress=False)
