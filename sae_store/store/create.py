"""Creating a new, empty activation store (metadata and per-sample labels, no activations yet)."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from sae_store._version import __version__
from sae_store.errors import SaeStoreError, StoreNotFoundError
from sae_store.store import schema as S
from sae_store.store.codecs import activation_compressors, with_checksum
from sae_store.store.config import StoreConfig
from sae_store.store.core import ActivationStore, open_store


@dataclass(frozen=True)
class ModelInfo:
    """What the store records about the model whose activations it holds."""

    identity: dict[str, Any]
    """Name, architecture and content hashes (see ``sae_store.models.loader.model_identity``)."""
    n_layers: int
    hidden_size: int
    prompts: dict[str, str]
    """Prompt per language key, e.g. ``{"en": "Describe ...", "ar": "صف ..."}``."""
    tokens_per_language: dict[str, int]
    """Sequence length of one sample per language (image tokens + chat-templated prompt)."""
    image_tokens: int
    """Image tokens per image (256 for Gemma 3)."""
    chat_template: str = ""
    image_processor: dict[str, Any] = field(default_factory=dict)


def _string_array(values: Sequence[str]) -> np.ndarray:
    # object dtype: a numpy "<U" array makes zarr warn about an unstable string encoding
    return np.array(list(values), dtype=object)


def _as_array(node: zarr.Array | zarr.Group) -> zarr.Array:
    assert isinstance(node, zarr.Array), node  # the schema makes these arrays
    return node


def create_array(group: zarr.Group, name: str, spec: S.VarSpec, shape: tuple[int, ...]) -> zarr.Array:
    kwargs: dict[str, Any] = {"compressors": with_checksum(spec.compressors)}
    if spec.shards is not None:
        kwargs["shards"] = spec.shards
    return group.create_array(
        name,
        shape=shape,
        chunks=spec.chunks,
        dtype=str if spec.dtype == "str" else spec.dtype,
        fill_value=spec.fill_value,
        dimension_names=list(spec.dims),
        attributes=spec.attrs,
        **kwargs,
    )


def gender_codes(genders: Sequence[str]) -> np.ndarray:
    """Integer codes of gender labels (their index in :data:`~sae_store.store.schema.GENDER_NAMES`)."""
    unknown = sorted(set(genders) - set(S.GENDER_NAMES))
    if unknown:
        raise SaeStoreError(f"gender labels {unknown} are not one of {list(S.GENDER_NAMES)}")
    index = {g: i for i, g in enumerate(S.GENDER_NAMES)}
    return np.array([index[g] for g in genders], dtype=np.int8)


def write_sample_metadata(
    group: zarr.Group, samples: pd.DataFrame, languages: Sequence[str], start: int
) -> None:
    """Write sample ids, image paths, genders (labels and codes) and captions for rows
    ``start:start+len(samples)``."""
    stop = start + len(samples)
    for name, column in ((S.SAMPLE, "sample_id"), (S.IMAGE, "image"), (S.GENDER, "gender")):
        _as_array(group[name])[start:stop] = _string_array(samples[column].astype(str).tolist())
    _as_array(group[S.GENDER_CODE])[start:stop] = gender_codes(samples["gender"].astype(str).tolist())
    captions = np.empty((len(samples), len(languages)), dtype=object)
    for j, lang in enumerate(languages):
        col = f"{lang}_caption"
        captions[:, j] = samples[col].fillna("").astype(str).to_numpy() if col in samples else ""
    # every file written, empty captions too: a missing caption file is damage (sae-store verify)
    _as_array(group[S.CAPTION]).with_config({"write_empty_chunks": True})[start:stop, :] = captions


def create_store(
    path: str | Path,
    samples: pd.DataFrame,
    model: ModelInfo,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    config: StoreConfig | None = None,
    images_dir: str | Path | None = None,
    extra_attrs: dict[str, Any] | None = None,
) -> ActivationStore:
    """Create an empty activation store (a template: metadata and labels, no activations).

    The store is built in a temporary folder beside ``path`` and renamed into place, so an
    interrupted call leaves nothing behind.

    Parameters
    ----------
    path
        Folder to create; must not exist.
    samples
        The samples table (``sample_id``, ``image``, ``gender``, ``<lang>_caption`` columns).
    model
        What to record about the model (identity, sizes, prompts, token counts).
    layers, languages
        Subsets to store; default all layers and every language that has a prompt.
    """
    path = Path(path)
    config = config or StoreConfig()
    if path.exists():
        try:
            open_store(path)
        except StoreNotFoundError:
            raise SaeStoreError(
                f"{str(path)!r} exists and is not an activation store; choose a new path"
            ) from None
        raise SaeStoreError(
            f"an activation store already exists at {str(path)!r}; add samples with `sae-store append` "
            "or remove it first"
        )
    layers = sorted(set(range(model.n_layers) if layers is None else layers))
    bad = [layer for layer in layers if not 0 <= layer < model.n_layers]
    if bad:
        raise SaeStoreError(f"layers {bad} are out of range: the model has layers 0..{model.n_layers - 1}")
    languages = list(model.prompts) if languages is None else list(languages)
    unknown = [lang for lang in languages if lang not in model.prompts]
    if unknown or not languages:
        raise SaeStoreError(
            f"languages {unknown or languages} have no prompt; known: {sorted(model.prompts)}"
        )
    if samples.empty:
        raise SaeStoreError("the samples table is empty; nothing to store")
    dup = samples["sample_id"][samples["sample_id"].duplicated()].tolist()
    if dup:
        raise SaeStoreError(f"sample ids must be unique; repeated: {dup[:5]}")

    layout = S.StoreLayout(
        layers=tuple(layers),
        languages=tuple(languages),
        n_samples=len(samples),
        max_tokens=max(model.tokens_per_language[lang] for lang in languages),
        hidden_size=model.hidden_size,
        samples_per_shard=config.samples_per_shard,
    )
    attrs: dict[str, Any] = {
        S.ATTR_KEY: {
            "schema_version": S.SCHEMA_VERSION,
            "version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "layers": list(layout.layers),
            "languages": list(layout.languages),
            "n_samples": layout.n_samples,
            "max_tokens": layout.max_tokens,
            "hidden_size": layout.hidden_size,
            "samples_per_shard": layout.samples_per_shard,
        },
        "model": {**model.identity, "n_layers": model.n_layers, "hidden_size": model.hidden_size},
        "prompts": {lang: model.prompts[lang] for lang in languages},
        "tokens_per_language": {lang: model.tokens_per_language[lang] for lang in languages},
        "image_tokens": model.image_tokens,
        "chat_template": model.chat_template,
        "image_processor": model.image_processor,
        "images_dir": str(Path(images_dir).resolve()) if images_dir else "",
        "config": {"store": config.to_dict(), "model": asdict(model), **(extra_attrs or {})},
        "Conventions": S.CONVENTIONS,
    }
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=S.encode_attrs(attrs))
        _create_coords(root, layout, samples)
        for name, spec in S.root_variables(layout, activation_compressors(config)).items():
            arr = create_array(root, name, spec, layout.shape(spec.dims))
            if name == S.ACTIVATIONS:
                arr.attrs["precision"] = config.precision
        codes = create_array(root, S.LANGUAGE_CODE, S.language_code_spec(languages), (len(languages),))
        codes[:] = np.arange(len(languages), dtype=np.int8)
        write_sample_metadata(root, samples, languages, 0)
        zarr.consolidate_metadata(str(tmp))
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_store(path)


def _create_coords(root: zarr.Group, layout: S.StoreLayout, samples: pd.DataFrame) -> None:
    values: dict[str, np.ndarray] = {
        S.LAYER: np.asarray(layout.layers, dtype=np.int32),
        S.LANGUAGE: _string_array(layout.languages),
        S.TOKEN: np.arange(layout.max_tokens, dtype=np.int32),
        S.HIDDEN: np.arange(layout.hidden_size, dtype=np.int32),
    }
    for name, v in values.items():
        create_array(root, name, S.coordinate_spec(name, len(v), layout), v.shape)[:] = v
    n = len(samples)
    create_array(root, S.SAMPLE, S.coordinate_spec(S.SAMPLE, n, layout), (n,))
