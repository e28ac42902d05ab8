"""Creating the store an extraction fills (``sae-store init``), from a samples table and a model folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from sae_store.errors import SaeStoreError
from sae_store.extract.config import DEFAULT_PROMPTS
from sae_store.extract.model_info import describe_model
from sae_store.selection import parse_languages
from sae_store.store import ActivationStore, StoreConfig, create_store


def images_dir_of(samples: pd.DataFrame) -> Path | None:
    """The folder every ``image_path`` of a samples table shares with its relative ``image``, if any."""
    if "image_path" not in samples.columns:
        return None
    roots = set()
    for image, absolute in zip(samples["image"].astype(str), samples["image_path"].astype(str), strict=True):
        rel, path = Path(image), Path(absolute)
        if not absolute or path.parts[-len(rel.parts) :] != rel.parts:
            return None
        roots.add(Path(*path.parts[: -len(rel.parts)]))
    return roots.pop() if len(roots) == 1 else None


def init_store(
    path: str | Path,
    samples: pd.DataFrame,
    model_dir: str | Path,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    prompts: Mapping[str, str] | None = None,
    config: StoreConfig | None = None,
    images_dir: str | Path | None = None,
) -> ActivationStore:
    """Create an empty store for ``samples`` and the model in ``model_dir`` (its weights are not loaded).

    Parameters
    ----------
    path
        Store folder to create.
    samples
        The samples table (see :class:`sae_store.data.samples.SamplesTable`).
    model_dir
        Local model folder.
    layers
        Decoder layers to store; default all.
    languages
        Language keys; default every key with a prompt (``en`` and ``ar`` unless ``prompts`` adds more).
    prompts
        Prompts per language, overriding or extending :data:`~sae_store.extract.config.DEFAULT_PROMPTS`.
    config
        On-disk layout and codec.
    images_dir
        Folder the ``image`` paths are relative to; default derived from the table's ``image_path``.

    Raises
    ------
    SaeStoreError
        For an unknown language, an images folder that cannot be found, or anything
        :func:`~sae_store.store.create_store` refuses.
    ModelLoadError
        If the model folder is incomplete or unsupported.
    """
    known = {**DEFAULT_PROMPTS, **(prompts or {})}
    chosen = parse_languages(",".join(languages), list(known)) if languages is not None else tuple(known)
    folder = Path(images_dir) if images_dir is not None else images_dir_of(samples)
    if folder is None:
        raise SaeStoreError(
            "cannot tell which folder the samples' image paths are relative to (the table's 'image_path' "
            "column does not end with its 'image' column); pass it with --images DIR"
        )
    if not folder.is_dir():
        raise SaeStoreError(
            f"images folder {str(folder)!r} does not exist; pass the right one with --images DIR"
        )
    info = describe_model(model_dir, {lang: known[lang] for lang in chosen})
    return create_store(
        path, samples, info, layers=layers, languages=chosen, config=config, images_dir=folder
    )
