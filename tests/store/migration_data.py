"""A small, partly written store with a ``features`` group, built through the public API.

The migration test builds it with the current code (the reference) and compares it with
``store-v1.tar.gz``: the same store built by this file with the version 1 code (sae-store 0.1 as of
schema version 1) and then migrated; and, with ``later_groups`` (a ``generation`` group and
analysis results too), with ``store-v2.tar.gz``, built by the version 2 code. Regenerate an archive
only with a checkout of its version: ``PYTHONPATH=<v1 checkout> python tests/store/migration_data.py
OUT.tar.gz`` (add ``--later-groups`` for the version 2 one).
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sae_store.store import ActivationStore, ModelInfo, StoreConfig, create_store
from sae_store.store import schema as S
from sae_store.store.group_schema import feature_variables
from sae_store.store.groups import create_group
from sae_store.store.schema import FEATURES

N_SAMPLES, PER_SHARD, LAYERS, HIDDEN, D_SAE = 10, 4, (0, 2, 3), 8, 16
TOKENS = {"en": 6, "ar": 8}
#: (block start, language) whose activations are written; block 8:10 (the short tail) stays empty
WRITTEN = [(0, "en"), (0, "ar"), (4, "en"), (4, "ar"), (8, "ar")]
#: a sample whose extraction failed: no activations, no flag, an error text
FAILED = (5, "ar")


def build(path: Path, *, later_groups: bool = False) -> None:
    """Create the store at ``path`` (must not exist) and fill it deterministically; with
    ``later_groups`` also a ``generation`` group and two analysis results."""
    n = N_SAMPLES
    samples = pd.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(n)],
            "image": [f"img/s{i:03d}.png" for i in range(n)],
            "gender": [("male", "female", "ambiguous", "unknown", "male")[i % 5] for i in range(n)],
            "en_caption": [f"A person number {i}." for i in range(n)],
            "ar_caption": [f"شخص رقم {i}." for i in range(n)],
        }
    )
    model = ModelInfo(
        identity={"name_or_path": "synthetic", "model_type": "gemma3", "config_sha256": "0" * 64},
        n_layers=4,
        hidden_size=HIDDEN,
        prompts={"en": "Describe the person.", "ar": "صف الشخص."},
        tokens_per_language=TOKENS,
        image_tokens=4,
        chat_template="{{ messages }}",
        image_processor={"size": {"height": 32, "width": 32}},
    )
    store = create_store(
        path,
        samples,
        model,
        layers=list(LAYERS),
        config=StoreConfig(
            samples_per_shard=PER_SHARD, compressor="blosc-zstd", clevel=3, shuffle="byte"
        ),  # the v1 default codec, which the fixture was written with
    )
    rng = np.random.default_rng(7)
    T = max(TOKENS.values())
    for start, lang in WRITTEN:
        stop = min(start + PER_SHARD, n)
        ok = np.array([(i, lang) != FAILED for i in range(start, stop)])
        acts = rng.normal(size=(len(LAYERS), stop - start, T, HIDDEN)).astype(np.float32)
        acts[:, :, TOKENS[lang] :] = np.nan
        acts[:, ~ok] = np.nan
        store.write(S.ACTIVATIONS, acts, start=start, layers=LAYERS, language=lang)
        ids = rng.integers(1, 1000, size=(stop - start, T)).astype(np.int32)
        roles = np.tile(np.array([1, 3, 3, 2, 2, 1, 2, 2][:T], np.int8), (stop - start, 1))
        n_tok = np.where(ok, TOKENS[lang], 0).astype(np.int32)
        errors = np.array(["" if k else "image unreadable" for k in ok], dtype=object)
        per_sample = [
            (S.INPUT_IDS, ids),
            (S.TOKEN_ROLE, roles),
            (S.N_TOKENS, n_tok),
            (S.EXTRACT_ERROR, errors),
        ]
        if hasattr(S, "EXTRACT_STATUS"):  # version 2 writes the error's integer code too
            per_sample.append((S.EXTRACT_STATUS, (errors != "").astype(np.int8)))
        for name, values in per_sample:
            store.write(name, values, start=start, language=lang)
        max_abs = np.where(ok, np.abs(np.nan_to_num(acts)).max(axis=(2, 3)), np.nan).astype(np.float32)
        store.write(S.MAX_ABS, max_abs, start=start, layers=LAYERS, language=lang)
        store.write(
            S.NONFINITE,
            np.where(ok, 0, -1).astype(np.int32)[None].repeat(3, 0),
            start=start,
            layers=LAYERS,
            language=lang,
        )
        store.write(
            S.COMPLETE,
            np.broadcast_to(ok, (len(LAYERS), stop - start)).copy(),
            start=start,
            layers=LAYERS,
            language=lang,
        )
    create_group(
        store,
        FEATURES,
        feature_variables(store.layout, D_SAE),
        sizes={S.FEATURE: D_SAE},
        coords={S.FEATURE: np.arange(D_SAE, dtype=np.int32)},
        attrs={
            "saes": {"2": {"folder": "/saes/layer_2", "d_sae": D_SAE}},
            "roles": ["image"],
            "d_sae": D_SAE,
        },
    )
    for start in (0, 4):
        for lang in ("en", "ar"):
            stats = rng.exponential(size=(3, PER_SHARD, D_SAE)).astype(np.float32)
            stats[:, :, ::3] = 0.0
            for name, values in zip(("feature_mean", "feature_max", "feature_frac"), stats, strict=True):
                store.write(name, values, start=start, layer=2, language=lang, group=FEATURES)
            store.write(
                "tokens_used",
                np.full(PER_SHARD, 2, np.int32),
                start=start,
                layer=2,
                language=lang,
                group=FEATURES,
            )
            store.write(
                S.COMPLETE, np.ones(PER_SHARD, bool), start=start, layer=2, language=lang, group=FEATURES
            )
    store.consolidate()
    if later_groups:
        _later_groups(store, rng)


def _later_groups(store: ActivationStore, rng: np.random.Generator) -> None:
    """Captions of the first block, an analysis with labels and text, an intervention-like result."""
    from sae_store.store import group_schema as G
    from sae_store.store.results import write_group

    new_tokens = 3
    attrs = {"generation": {"max_new_tokens": new_tokens, "decoding": "greedy"}, "model": {"name": "m"}}
    create_group(
        store,
        S.GENERATION,
        G.generation_variables(store.layout, new_tokens),
        sizes={G.NEW_TOKEN: new_tokens},
        attrs=attrs,
        root_coords=G.GENERATION_COORDS,
    )
    for lang in ("en", "ar"):
        values = {
            "generated_caption": np.array([f"{lang} caption {i}" for i in range(PER_SHARD)], dtype=object),
            "generated_ids": rng.integers(0, 9, size=(PER_SHARD, new_tokens)).astype(np.int32),
            "n_generated": np.full(PER_SHARD, new_tokens, np.int32),
            "male_terms": np.arange(PER_SHARD, dtype=np.int32),
            "female_terms": np.zeros(PER_SHARD, np.int32),
            S.COMPLETE: np.ones(PER_SHARD, bool),
        }
        for name, value in values.items():
            store.write(name, value, start=0, language=lang, group=S.GENERATION)
    entries = xr.Dataset(
        {
            "direction": ("entry", np.array(["male", "female", "male"], dtype=object)),
            "entry_language": ("entry", np.array(["en", "ar", "ar"], dtype=object)),
            "description": ("entry", np.array(["a male feature", "a female one", "x y"], dtype=object)),
            "score": ((S.LAYER, S.LANGUAGE), rng.normal(size=(len(LAYERS), 2))),
        },
        coords={S.LAYER: list(LAYERS), S.LANGUAGE: np.array(["en", "ar"], dtype=object)},
        attrs={"config": {"n": 3}},
    )
    write_group(store, f"{S.ANALYSIS}/labels", entries)
    per_sample = xr.Dataset(
        {"effect": ((S.LANGUAGE, S.SAMPLE), rng.normal(size=(2, 3)))},
        coords={
            S.LANGUAGE: np.array(["en", "ar"], dtype=object),
            S.SAMPLE: np.array(["s000", "s001", "s004"], dtype=object),
            S.GENDER: (S.SAMPLE, np.array(["male", "female", "male"], dtype=object)),
        },
        attrs={"summary": json.dumps({"layer": 2})},
    )
    write_group(store, f"{S.ANALYSIS}/intervene/demo/layer_2", per_sample)


if __name__ == "__main__":
    out = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp) / "store.zarr", later_groups="--later-groups" in sys.argv)
        with tarfile.open(out, "w:gz") as tar:
            tar.add(Path(tmp) / "store.zarr", arcname="store.zarr")
    print(out)
