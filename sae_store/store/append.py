"""Growing a store's sample dimension with new samples (``sae-store append``), safely.

Everything is validated before the store is touched. The change then runs under the exclusive
append lock, with a journal: the metadata files (every ``zarr.json``) are copied aside first, so a
failure at any step - or a killed process, repaired later by :func:`unlock_store` - restores the
old shape exactly. Readers that opened the store before keep their metadata and read the same old
values: new samples only add chunks, and a partial last chunk is rewritten atomically with its old
values kept. The consolidated metadata and the attributes switch to the new size last, in that
order, so a reader opening mid-way sees the old size or a consistent superset.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import zarr

from sae_store.data.samples import validate_samples
from sae_store.errors import DataError, StoreLockedError
from sae_store.store import schema as S
from sae_store.store.blocks import Block
from sae_store.store.core import ActivationStore, open_store
from sae_store.store.create import write_sample_metadata
from sae_store.store.lock import (
    append_lock,
    ignoring_lock_dir,
    lock_dir,
    read_append_lock,
    release_append_lock,
    running_extractions,
    stale_lock_message,
    state,
)

_JOURNAL = "append-journal"
_JOURNAL_DONE = "journal.json"


class AppendResult(NamedTuple):
    """What :func:`append_samples` changed."""

    n_before: int
    n_after: int
    added: list[str]
    """Sample ids added, in order."""
    blocks_to_extract: list[Block]
    """Shard blocks that now hold samples without activations (the old tail block included)."""


def _check_new_samples(store: ActivationStore, samples: pd.DataFrame, images_dir: Path | None) -> None:
    validate_samples(samples, source="the new samples table")
    existing = {str(s) for s in np.asarray(store.array(S.SAMPLE)[...])}
    dup = [s for s in samples["sample_id"].astype(str) if s in existing]
    if dup:
        raise DataError(
            f"{len(dup)} sample id(s) are already in store {str(store.path)!r}: {dup[:20]}"
            f"{' ...' if len(dup) > 20 else ''}; append only new samples (remove these rows)"
        )
    folder = images_dir or (Path(store.attrs["images_dir"]) if store.attrs.get("images_dir") else None)
    if folder is not None:
        missing = [im for im in samples["image"].astype(str) if not (folder / im).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) of the new samples are not in {str(folder)!r}: {missing[:10]}; "
                "fix the table or pass the right folder with --images"
            )


def _sample_arrays(path: Path) -> list[tuple[str, int, int, bool]]:
    """(name, sample axis, samples per file, small) of every array with a sample dimension.

    Small arrays (no token or hidden dimension) are the ones whose boundary files an append may
    rewrite; activations and per-token arrays are only resized.
    """
    out = []
    with ignoring_lock_dir():
        for name, arr in zarr.open_group(str(path), mode="r", use_consolidated=False).arrays():
            dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
            if S.SAMPLE in dims:
                axis = dims.index(S.SAMPLE)
                small = S.TOKEN not in dims and S.HIDDEN not in dims
                out.append((name, axis, (arr.shards or arr.chunks)[axis], small))
    return out


def _chunk_files(path: Path, name: str, axis: int, per_file: int, first_sample: int) -> list[Path]:
    """Files of array ``name`` holding samples from ``first_sample`` on (chunk keys ``c/i/j/...``)."""
    folder = path / name / "c"
    first = first_sample // per_file
    return [
        f
        for f in (folder.rglob("*") if folder.is_dir() else [])
        if f.is_file()
        and len(parts := f.relative_to(folder).parts) > axis
        and parts[axis].isdigit()
        and int(parts[axis]) >= first
    ]


def _write_journal(path: Path, n_before: int) -> None:
    """Copy aside what an append changes: every ``zarr.json``, and the partly filled last chunk
    files of the small per-sample arrays (rewritten with new values beside the old ones)."""
    journal = lock_dir(path) / _JOURNAL
    shutil.rmtree(journal, ignore_errors=True)
    saved = [path / "zarr.json", *path.glob("*/zarr.json")]
    for name, axis, per_file, small in _sample_arrays(path):
        if small and n_before % per_file:
            saved += _chunk_files(path, name, axis, per_file, n_before)
    for f in saved:
        target = journal / f.relative_to(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    # Written last: a journal without this file is incomplete and the store was not touched yet.
    (journal / _JOURNAL_DONE).write_text(json.dumps({"n_samples": n_before}))


def _rollback(path: Path) -> bool:
    """Put back what the journal saved and delete chunk files created beyond the old size.

    Returns False when there was no complete journal (the store had not been touched).
    """
    journal = lock_dir(path) / _JOURNAL
    done = journal / _JOURNAL_DONE
    if not done.is_file():
        shutil.rmtree(journal, ignore_errors=True)
        return False
    n_before = int(json.loads(done.read_text())["n_samples"])
    for name, axis, per_file, _ in _sample_arrays(path):
        for f in _chunk_files(path, name, axis, per_file, -(-n_before // per_file) * per_file):
            f.unlink()
    for saved in journal.rglob("*"):
        if saved.is_file() and saved != done:
            target = path / saved.relative_to(journal)
            tmp = target.with_name(f".{target.name}.restore")
            shutil.copy2(saved, tmp)
            os.replace(tmp, target)
    shutil.rmtree(journal)
    return True


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
        If the table is invalid, repeats sample ids of the store, or names missing images.
    StoreLockedError
        If another append holds the lock, or an extraction is running.
    """
    store = open_store(path)
    store.require_writable()
    images = Path(images_dir) if images_dir is not None else None
    _check_new_samples(store, samples, images)
    with append_lock(store.path, command=command):
        store = open_store(path)  # another append may have finished meanwhile
        _check_new_samples(store, samples, images)
        n_before = store.layout.n_samples
        n_after = n_before + len(samples)
        _write_journal(store.path, n_before)
        try:
            group = zarr.open_group(str(store.path), mode="r+", use_consolidated=False)
            for name, axis, _, _ in _sample_arrays(store.path):
                arr = group[name]
                arr.resize(tuple(n_after if i == axis else n for i, n in enumerate(arr.shape)))  # type: ignore[union-attr]
            write_sample_metadata(group, samples.reset_index(drop=True), store.layout.languages, n_before)
            with ignoring_lock_dir():
                zarr.consolidate_metadata(str(store.path))
            root = zarr.open_group(str(store.path), mode="r+")
            root.update_attributes(
                S.encode_attrs({S.ATTR_KEY: {**store.attrs[S.ATTR_KEY], "n_samples": n_after}})
            )
        except BaseException:
            _rollback(store.path)
            raise
        shutil.rmtree(lock_dir(store.path) / _JOURNAL)
    new = open_store(path)
    first = n_before // new.layout.samples_per_shard
    return AppendResult(n_before, n_after, samples["sample_id"].astype(str).tolist(), new.blocks[first:])


def unlock_store(path: str | Path, *, force: bool = False) -> list[str]:
    """Remove a stale append lock, first rolling back the append it guarded if that stopped half-way.

    Returns what was done, as lines for people. Refuses a lock whose process is running; a lock from
    another host (whose process cannot be checked) needs ``force``.
    """
    store = open_store(path)
    done: list[str] = []
    info = read_append_lock(store.path)
    if info is not None:
        st = state(info)
        if st == "running" or (st == "unknown" and not force):
            raise StoreLockedError(stale_lock_message(store.path, info, st))
        if _rollback(store.path):
            n = open_store(path).layout.n_samples
            done.append(f"rolled back the interrupted append: the store has {n} samples again")
        release_append_lock(store.path)
        done.append(f"removed the append lock of {info.describe()}")
    stale = len(list(lock_dir(store.path).glob("extract-*.json"))) - len(running_extractions(store.path))
    if stale > 0:
        done.append(f"removed {stale} registration(s) of extractions that are no longer running")
    return done or ["the store was not locked"]
