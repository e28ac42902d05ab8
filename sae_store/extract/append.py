"""``sae-store append``: new samples checked like ``prepare`` checks them, then added to the store.

The store grows under its lock with a journal (:func:`sae_store.store.append.grow_samples`); the
samples table and its images are checked here, before and again under the lock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sae_store.data.images import check_image
from sae_store.data.samples import validate_samples
from sae_store.errors import DataError
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.append import AppendResult, grow_samples


def check_new_samples(store: ActivationStore, samples: pd.DataFrame, images_dir: Path | None) -> None:
    validate_samples(samples, source="the new samples table")
    existing = {str(s) for s in np.asarray(store.array(S.SAMPLE)[...])}
    dup = [s for s in samples["sample_id"].astype(str) if s in existing]
    if dup:
        raise DataError(
            f"{len(dup)} sample id(s) are already in store {str(store.path)!r}: {dup[:20]}"
            f"{' ...' if len(dup) > 20 else ''}; append only new samples (remove these rows)"
        )
    folder = images_dir or (Path(store.attrs["images_dir"]) if store.attrs.get("images_dir") else None)
    if folder is None:
        return
    problems = [(im, p) for im in samples["image"].astype(str) if (p := check_image(folder / im)) is not None]
    if problems:
        listed = "; ".join(f"{im}: {p.reason}" for im, p in problems[:10])
        raise DataError(
            f"{len(problems)} image(s) of the new samples in {str(folder)!r} cannot be used ({listed}"
            f"{' ...' if len(problems) > 10 else ''}); fix the table (`sae-store prepare` drops such "
            "images) or pass the right folder with --images"
        )


def append_samples(
    path: str | Path,
    samples: pd.DataFrame,
    *,
    images_dir: str | Path | None = None,
    command: str = "append",
) -> AppendResult:
    """Add ``samples`` (a samples table of new images) at the end of the store's sample dimension.

    Parameters
    ----------
    path
        The store.
    samples
        New rows following the samples-table contract; none of their ids may be in the store.
    images_dir
        Folder to check the new images in; default the store's ``images_dir`` attribute.

    Raises
    ------
    DataError
        If the table is invalid, repeats sample ids of the store, or names missing or undecodable
        images.
    StoreLockedError
        If another append holds the lock, or an extraction is running.
    """
    images = Path(images_dir) if images_dir is not None else None
    return grow_samples(
        path, samples, lambda store: check_new_samples(store, samples, images), command=command
    )
