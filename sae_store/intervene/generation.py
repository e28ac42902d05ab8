"""The store's ``generation`` group: the model's own captions per (language, sample), written block by
block (resumable), and the samples an intervention experiment reads back from it.

Variables (all chunked ``(1, samples_per_shard)`` along (language, sample), so a block write owns its
chunks): ``generated_caption`` (string), ``generated_ids`` (int32, ``new_token`` axis, -1 after the
caption's end), ``n_generated``, ``male_terms``, ``female_terms`` (int32, -1 = not generated) and
``complete`` (bool, set after the block's data). Coordinates ``language``, ``sample`` and ``gender``
repeat the root's. Attributes record the generation settings and the model identity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import xarray as xr
import zarr
from PIL import Image

from sae_store.errors import DataError, IncompleteError, SaeStoreError
from sae_store.extract.block import load_images
from sae_store.intervene.captions import generate_captions
from sae_store.intervene.config import CaptionConfig
from sae_store.intervene.experiment import LanguageSamples
from sae_store.models.loader import LoadedModel
from sae_store.progress import progress_bar
from sae_store.store import ActivationStore
from sae_store.store import schema as S

__all__ = [
    "GENERATION_GROUP",
    "CaptionSummary",
    "LazyImages",
    "caption_store",
    "experiment_samples",
    "store_images",
]

GENERATION_GROUP = "generation"
NEW_TOKEN = "new_token"
_PER_SAMPLE = {"n_generated": -1, "male_terms": -1, "female_terms": -1}


def _strings(values: Any) -> np.ndarray:
    # zarr returns numpy StringDType arrays, which refuse .astype(str); plain str objects work everywhere.
    return np.array([str(v) for v in np.asarray(values).ravel()], dtype=object)


class LazyImages(Sequence[Image.Image]):
    """Images opened from disk only when indexed; a slice returns a list of images."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> Image.Image: ...
    @overload
    def __getitem__(self, index: slice) -> list[Image.Image]: ...
    def __getitem__(self, index: int | slice) -> Image.Image | list[Image.Image]:
        paths = self.paths[index] if isinstance(index, slice) else [self.paths[index]]
        images, errors = load_images(paths)
        bad = [e for e in errors if e]
        if bad:
            raise DataError(f"{bad[0]}; fix or remove the image (`sae-store prepare` checks images)")
        out = [im for im in images if im is not None]
        return out if isinstance(index, slice) else out[0]


def store_images(store: ActivationStore, images_dir: str | Path | None = None) -> LazyImages:
    """The store's images (one per sample, in store order), read lazily."""
    folder = images_dir or store.attrs.get("images_dir") or ""
    if not folder or not Path(folder).is_dir():
        raise SaeStoreError(
            f"images folder {str(folder)!r} of store {str(store.path)!r} is missing; "
            "pass it with --images DIR"
        )
    root: Any = store.zarr_group()
    names = _strings(root[S.IMAGE][...])
    return LazyImages([Path(folder) / name for name in names])


def _create_group(store: ActivationStore, attrs: dict[str, Any], max_new_tokens: int) -> Any:
    root: Any = store.zarr_group(mode="r+")
    layout = store.layout
    L, N, spb = len(layout.languages), layout.n_samples, layout.samples_per_shard
    group = root.create_group(GENERATION_GROUP, overwrite=True, attributes=attrs)

    def array(name: str, dims: tuple[str, ...], dtype: Any, fill: Any, chunks: tuple[int, ...]) -> zarr.Array:
        shape = tuple({S.LANGUAGE: L, S.SAMPLE: N, NEW_TOKEN: max_new_tokens}[d] for d in dims)
        # the CF "coordinates" attribute makes xarray show the gender label beside each value
        attributes: dict[str, Any] = {"coordinates": S.GENDER} if len(dims) > 1 else {}
        return group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            dimension_names=list(dims),
            attributes=attributes,
        )

    array(S.LANGUAGE, (S.LANGUAGE,), str, "", (L,))[:] = np.array(layout.languages, dtype=object)
    for name in (S.SAMPLE, S.GENDER):
        array(name, (S.SAMPLE,), str, "", (spb,))[:] = root[name][...]
    array("generated_caption", (S.LANGUAGE, S.SAMPLE), str, "", (1, spb))
    array("generated_ids", (S.LANGUAGE, S.SAMPLE, NEW_TOKEN), "int32", -1, (1, spb, max_new_tokens))
    for name, fill in _PER_SAMPLE.items():
        array(name, (S.LANGUAGE, S.SAMPLE), "int32", fill, (1, spb))
    array(S.COMPLETE, (S.LANGUAGE, S.SAMPLE), "bool", False, (1, spb))
    store.consolidate()
    return group


def _grow(store: ActivationStore) -> None:
    # Samples appended to the store since the captions were made: extend every array along `sample`.
    # Opened without the consolidated metadata, which is stale until the end.
    root: Any = store.zarr_group()
    group: Any = zarr.open_group(str(store.path / GENERATION_GROUP), mode="r+", use_consolidated=False)
    n_old, n_new = group[S.SAMPLE].shape[0], store.layout.n_samples
    for _name, arr in group.arrays():
        dims = list(arr.metadata.dimension_names)
        if S.SAMPLE in dims:
            arr.resize(tuple(n_new if d == S.SAMPLE else n for d, n in zip(dims, arr.shape, strict=True)))
    for name in (S.SAMPLE, S.GENDER):
        group[name][n_old:n_new] = root[name][n_old:n_new]
    store.consolidate()


def _open_group(
    store: ActivationStore, config: CaptionConfig, identity: dict[str, Any], overwrite: bool
) -> Any:
    """The generation group, created (or re-created with ``overwrite``) or grown to the store's samples."""
    attrs = {
        "generation": {**config.to_dict(), "decoding": "greedy"},
        "model": identity,
        "prompts": store.attrs.get("prompts", {}),
    }
    root: Any = store.zarr_group()
    if GENERATION_GROUP not in root or overwrite:
        return _create_group(store, attrs, config.max_new_tokens)
    group: Any = store.zarr_group(GENERATION_GROUP, mode="r+")
    before = dict(group.attrs).get("generation", {})
    if before.get("max_new_tokens") != config.max_new_tokens:
        raise SaeStoreError(
            f"the store's captions were generated with max_new_tokens={before.get('max_new_tokens')!r}; this "
            f"run asks for {config.max_new_tokens}. Pass --overwrite to generate them all again, or keep "
            f"--max-new-tokens {before.get('max_new_tokens')}"
        )
    if group[S.SAMPLE].shape[0] < store.layout.n_samples:
        _grow(store)
        group = store.zarr_group(GENERATION_GROUP, mode="r+")
    return group


@dataclass(frozen=True)
class CaptionSummary:
    """What ``caption_store`` did."""

    generated: int
    """(language, sample) captions generated by this run."""
    skipped: int
    """Captions already complete."""
    male_terms: dict[str, int]
    """Male terms per language over all stored captions."""
    female_terms: dict[str, int]


def caption_store(
    store: ActivationStore,
    loaded: LoadedModel,
    config: CaptionConfig,
    *,
    languages: Sequence[str] | None = None,
    images_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> CaptionSummary:
    """Generate a greedy caption for every (language, sample) of the store that has none yet.

    Blocks of ``samples_per_shard`` samples are written with their ``complete`` flags, so a killed run
    resumes where it stopped. Count of gender terms follow the data preparation's word lists.
    """
    languages = list(store.layout.languages if languages is None else languages)
    for lang in languages:
        store.language_index(lang)
    group = _open_group(store, config, loaded.identity, overwrite)
    images = store_images(store, images_dir)
    prompts = store.attrs.get("prompts", {})
    done = np.asarray(group[S.COMPLETE][...], dtype=bool)
    todo = [
        (lang, b)
        for lang in languages
        for b in store.blocks
        if not done[store.language_index(lang), b.start : b.stop].all()
    ]
    generated = 0
    for lang, block in progress_bar(todo, desc="caption blocks", unit="block", enabled=progress):
        caps = generate_captions(loaded, images[block.start : block.stop], prompts[lang], lang, config=config)  # type: ignore[arg-type]
        ids = np.full((len(caps), config.max_new_tokens), -1, dtype=np.int32)
        for i, c in enumerate(caps):
            ids[i, : len(c.token_ids)] = c.token_ids
        values: dict[str, np.ndarray] = {
            "generated_caption": np.array([c.text for c in caps], dtype=object),
            "generated_ids": ids,
            "n_generated": np.array([len(c.token_ids) for c in caps], dtype=np.int32),
            "male_terms": np.array([c.male for c in caps], dtype=np.int32),
            "female_terms": np.array([c.female for c in caps], dtype=np.int32),
        }
        for name, value in values.items():
            store.write(name, value, start=block.start, language=lang, group=GENERATION_GROUP)
        store.write(
            S.COMPLETE,
            np.ones(len(caps), dtype=bool),
            start=block.start,
            language=lang,
            group=GENERATION_GROUP,
        )
        generated += len(caps)
    ds = read_generation(store, require_complete=False)
    n_done = int(ds[S.COMPLETE].sum())
    return CaptionSummary(
        generated=generated,
        skipped=n_done - generated,
        male_terms={lang: int(ds["male_terms"].sel(language=lang).clip(min=0).sum()) for lang in languages},
        female_terms={
            lang: int(ds["female_terms"].sel(language=lang).clip(min=0).sum()) for lang in languages
        },
    )


def read_generation(store: ActivationStore, *, require_complete: bool = True) -> xr.Dataset:
    """The ``generation`` group, loaded.

    Raises
    ------
    IncompleteError
        If captions have not been generated (or, with ``require_complete``, not for every sample).
    """
    root = store.zarr_group()
    if GENERATION_GROUP not in root:
        raise IncompleteError(
            f"store {str(store.path)!r} has no generated captions; run `sae-store caption` first"
        )
    ds = store.dataset(GENERATION_GROUP).load()
    if require_complete and not bool(ds[S.COMPLETE].all()):
        missing = int((~ds[S.COMPLETE]).sum())
        raise IncompleteError(
            f"{missing} (language, sample) captions are missing in store {str(store.path)!r}; rerun "
            "`sae-store caption` (it resumes)"
        )
    ds.attrs = {k: json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v for k, v in ds.attrs.items()}
    return ds


def experiment_samples(
    store: ActivationStore,
    languages: Sequence[str],
    *,
    images_dir: str | Path | None = None,
    max_samples: int | None = None,
) -> tuple[np.ndarray, list[LanguageSamples]]:
    """The male- and female-labelled samples with captions in every language, for an experiment.

    With ``max_samples``, the first ``max_samples // 2`` samples of each gender (store order) are
    kept (and the remainder from the other gender if one has fewer).

    Returns
    -------
    sample_index : numpy.ndarray
        Store positions of the samples used.
    samples : list of LanguageSamples
        One per language, over those samples.
    """
    gen = read_generation(store, require_complete=False)
    lang_idx = [store.language_index(lang) for lang in languages]
    complete = np.asarray(gen[S.COMPLETE].values, dtype=bool)[lang_idx].all(axis=0)
    genders = _strings(gen[S.GENDER].values)
    index = np.flatnonzero(complete & np.isin(genders, ["male", "female"]))
    if max_samples is not None:
        male, female = index[genders[index] == "male"], index[genders[index] == "female"]
        n_m = min(male.size, max(max_samples // 2, max_samples - female.size))
        index = np.sort(np.concatenate([male[:n_m], female[: max_samples - n_m]]))
    images = store_images(store, images_dir)
    chosen = LazyImages([images.paths[i] for i in index])
    ids, lengths = gen["generated_ids"].values, gen["n_generated"].values
    samples = [
        LanguageSamples(
            language=lang,  # type: ignore[arg-type]
            prompt=store.attrs["prompts"][lang],
            images=chosen,
            genders=genders[index],
            captions=[tuple(int(t) for t in ids[j, i, : lengths[j, i]]) for i in index],
        )
        for lang, j in zip(languages, lang_idx, strict=True)
    ]
    return index, samples
