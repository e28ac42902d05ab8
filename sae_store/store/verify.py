"""Checking a store's data (``sae-store verify``, ``status --verify``): every file of every array.

:func:`check_flags` is cheap (file existence only): the root's arrays exist, and every file that a
flagged block needs - in the root and in the ``features`` and ``generation`` groups - exists.
:func:`verify_store` also decodes every chunk file of every array of the store, groups included
(each chunk's CRC32C catches any changed byte; arrays written before checksums rely on their codecs),
checks coordinates and recorded statistics against the data (:mod:`~sae_store.store.verify_checks`),
and counts per layer the NaN/inf values over real tokens of flagged samples and the values beyond
float16's range. A damaged file is named before any statistic derived from it.
:func:`sae_store.store.repair.repair_store` clears what it can and says which command redoes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm

from sae_store.store import schema as S
from sae_store.store.checksums import array_metadata
from sae_store.store.codecs import has_checksum
from sae_store.store.core import ActivationStore
from sae_store.store.lock import ignoring_lock_dir, interruption
from sae_store.store.redo import FLAGGED_GROUPS, init_command, missing_arrays, redo_command
from sae_store.store.verify_checks import (
    FLOAT16_MAX,
    LABEL_ARRAYS,
    activation_stats,
    chunk_key,
    coordinate_errors,
    dims,
    file_shape,
    flag_groups,
    flagged_arrays,
    is_coordinate,
    missing_flagged,
    whole_keys,
    written_whole,
    wrong_token_counts,
)
from sae_store.store.verify_report import LayerHealth, Problem, Region, VerifyReport

__all__ = ["FLOAT16_MAX", "check_flags", "recorded_nonfinite", "verify_store"]


class _Inventory:
    """The store's arrays (root and groups, each opened from its own metadata) and what is wrong."""

    def __init__(self, store: ActivationStore) -> None:
        self.store = store
        self.report = VerifyReport(
            store.path, interruption(store.path), init_command=init_command(store.path, store.attrs)
        )
        self.arrays: dict[str, zarr.Array] = {}
        self.damaged: set[str] = set()
        """Keys of arrays with a damaged or missing file: no statistic is derived from them."""
        with ignoring_lock_dir():
            for key, _ in array_metadata(store.path, problems=self._unreadable_metadata):
                try:
                    self.arrays[key] = zarr.open_array(str(store.path / key), mode="r")
                except Exception as e:  # any parse failure of a damaged zarr.json
                    self._unreadable_metadata(key, e)
        missing = missing_arrays(store.path) if store.schema_version >= 2 else []  # version 1 had fewer
        for key in [*missing, *self._missing_from_consolidated()]:
            self.add(f"{key}/zarr.json", key, Region(None, None, None), "the array is missing (no zarr.json)",
                     whole_group=True)  # fmt: skip

    def _unreadable_metadata(self, key: str, error: BaseException) -> None:
        self.add(f"{key}/zarr.json", key, Region(None, None, None), f"metadata cannot be read ({error})",
                 whole_group=True)  # fmt: skip

    def _missing_from_consolidated(self) -> Iterator[str]:
        """Arrays of groups the root's consolidated metadata lists but whose metadata is gone."""
        try:
            root = zarr.open_group(str(self.store.path), mode="r", use_consolidated=True)
            listed = root.metadata.consolidated_metadata.flattened_metadata  # type: ignore[union-attr]
        except Exception:  # no or damaged consolidated metadata: nothing more to compare with
            return
        for key, meta in listed.items():
            if (
                "/" in key
                and getattr(meta, "node_type", "") == "array"
                and not (self.store.path / key).is_dir()
            ):
                yield key

    def add(
        self,
        file: str,
        key: str,
        region: Region,
        error: str,
        *,
        whole_group: bool = False,
        notice: bool = False,
    ) -> None:
        if any(p.file == file for p in self.report.problems):
            return  # named already (a flag file is decoded twice)
        if not notice:
            self.damaged.add(key)
        group = key.rpartition("/")[0]
        # a result, or a group's coordinates or metadata: the whole group is written again
        coordinate = key in self.arrays and is_coordinate(key, dims(self.arrays[key]))
        result = group.startswith(S.ANALYSIS) or (bool(group) and (region.samples is None or coordinate))
        redo = redo_command(self.store.path, self.store.attrs, key)
        if not group and whole_group:
            redo = None  # the root's metadata: made by init
        self.report.problems.append(Problem(file, key, region, error, redo, whole_group or result, notice))

    def region(self, key: str, chunk: tuple[int, ...]) -> Region:
        arr = self.arrays[key]
        span = {
            d: (k * n, min((k + 1) * n, length))
            for d, k, n, length in zip(dims(arr), chunk, file_shape(arr), arr.shape, strict=True)
        }
        lay = self.store.layout
        return Region(
            layers=tuple(lay.layers[slice(*span[S.LAYER])]) if S.LAYER in span else None,
            languages=tuple(lay.languages[slice(*span[S.LANGUAGE])]) if S.LANGUAGE in span else None,
            samples=span.get(S.SAMPLE),
        )

    def missing_file(self, key: str, chunk: tuple[int, ...], why: str) -> None:
        if not (self.store.path / key / chunk_key(chunk)).is_file():
            self.add(f"{key}/{chunk_key(chunk)}", key, self.region(key, chunk), f"missing, although {why}")

    def files(self) -> Iterator[tuple[str, Path, tuple[int, ...]]]:
        """Every chunk file of every array with its chunk-grid key (temporary files aside)."""
        for key, arr in self.arrays.items():
            for chunk in _chunk_files(self.store.path / key, arr.ndim):
                yield key, self.store.path / key / chunk_key(chunk), chunk


def _read_flags(inv: _Inventory, group: str) -> np.ndarray | None:
    key = f"{group}/{S.COMPLETE}" if group else S.COMPLETE
    if key in inv.damaged:
        return None
    arr = inv.arrays[key]
    try:
        return np.asarray(arr[...], dtype=bool)
    except Exception:  # a damaged flag file: name it (decoding each of its files)
        decode = _decoder(inv)
        for chunk in _chunk_files(inv.store.path / key, arr.ndim):
            _, f, _, value, _ = decode((key, inv.store.path / key / chunk_key(chunk), chunk))
            if isinstance(value, Exception):
                inv.add(str(f.relative_to(inv.store.path)), key, inv.region(key, chunk), _why(value))
        return None


def _check_existence(inv: _Inventory) -> None:
    """Files that flagged blocks need, and every file of the arrays that must be whole."""
    for group in flag_groups(inv.arrays):
        flags = _read_flags(inv, group)
        if flags is None:
            continue
        flag_dims = dims(inv.arrays[f"{group}/{S.COMPLETE}" if group else S.COMPLETE])
        flag_key = f"{group}/{S.COMPLETE}" if group else S.COMPLETE
        for key in flagged_arrays(group, inv.arrays):
            for chunk in missing_flagged(inv.arrays[key], flags, flag_dims):
                inv.missing_file(key, chunk, "its samples are flagged complete")
        for chunk in _flag_files_of_data(inv, group):
            if not (inv.store.path / flag_key / chunk_key(chunk)).is_file():
                redo = redo_command(inv.store.path, inv.store.attrs, flag_key)
                inv.add(f"{flag_key}/{chunk_key(chunk)}", flag_key, inv.region(flag_key, chunk),
                        "missing while data files of its samples exist: a write was interrupted there, or "
                        f"the flags were lost; `{redo}` redoes the block", notice=True)  # fmt: skip
    for key, arr in inv.arrays.items():
        checked = has_checksum(getattr(arr.metadata, "codecs", ()))
        whole = key in LABEL_ARRAYS or (checked and written_whole(key, dims(arr)))
        for chunk in whole_keys(arr) if whole and inv.store.layout.n_samples else ():
            inv.missing_file(key, chunk, "every file of this array is written")


def _flag_files_of_data(inv: _Inventory, group: str) -> set[tuple[int, ...]]:
    """Chunk keys of ``group``'s flag array that cover the samples of some existing data file."""
    flag_key = f"{group}/{S.COMPLETE}" if group else S.COMPLETE
    flag_arr = inv.arrays[flag_key]
    size = dict(zip(dims(flag_arr), file_shape(flag_arr), strict=True))
    keys = set()
    for key in flagged_arrays(group, inv.arrays):
        arr = inv.arrays[key]
        for f in _chunk_files(inv.store.path / key, arr.ndim):
            chunk = dict(zip(dims(arr), f, strict=True))
            start = dict(
                zip(dims(arr), (k * n for k, n in zip(f, file_shape(arr), strict=True)), strict=True)
            )
            keys.add(tuple(start[d] // size[d] if d in chunk else 0 for d in dims(flag_arr)))
    return keys


def _chunk_files(folder: Path, ndim: int) -> Iterator[tuple[int, ...]]:
    """Chunk-grid keys of the chunk files in array folder ``folder`` (temporary files aside)."""
    for root, _, names in os.walk(folder / "c"):
        for n in names:
            parts = (Path(root) / n).relative_to(folder / "c").parts
            if len(parts) == ndim and all(p.isdigit() for p in parts):
                yield tuple(int(p) for p in parts)


def check_flags(store: ActivationStore) -> VerifyReport:
    """Cheap checks (no decoding): the arrays exist, and every file flagged blocks need exists."""
    inv = _Inventory(store)
    _check_existence(inv)
    return inv.report


def recorded_nonfinite(store: ActivationStore) -> dict[int, int]:
    """NaN/inf values per layer as recorded by the extraction (the ``nonfinite`` variable); 0s omitted."""
    try:
        counts = np.asarray(store.array(S.NONFINITE)[...])
    except KeyError:
        return {}
    per_layer = np.where(counts > 0, counts, 0).sum(axis=(1, 2))
    return {layer: int(n) for layer, n in zip(store.layout.layers, per_layer, strict=True) if n}


def _decoder(
    inv: _Inventory,
) -> Callable[[tuple[str, Path, tuple[int, ...]]], tuple[str, Path, tuple[int, ...], Any, int]]:
    def decode(item: tuple[str, Path, tuple[int, ...]]) -> tuple[str, Path, tuple[int, ...], Any, int]:
        key, f, chunk = item
        arr = inv.arrays[key]
        size = f.stat().st_size
        sel = tuple(slice(k * n, (k + 1) * n) for k, n in zip(chunk, file_shape(arr), strict=True))
        try:
            return key, f, chunk, np.asarray(arr[sel]), size
        except Exception as e:  # any codec failure (crc32c, zstd, blosc, JSON of strings) is damage
            return key, f, chunk, e, size

    return decode


def verify_store(
    store: ActivationStore, *, workers: int | None = None, progress: bool = False
) -> VerifyReport:
    """Decode every chunk file of every array; report damaged and missing files (first), then NaN/inf
    and float16 overflow per layer.

    Parameters
    ----------
    store
        The store.
    workers
        Files decoded at once (default: the CPUs); the codecs release the GIL.
    progress
        Show a progress bar of the files decoded.
    """
    started = time.perf_counter()
    inv = _Inventory(store)
    report = inv.report
    _check_existence(inv)
    items = list(inv.files())
    decode = _decoder(inv)
    bar = tqdm(
        total=len(items), desc="verify", unit="file", disable=None if progress else True, dynamic_ncols=True
    )
    with bar, ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for key, f, chunk, value, size in pool.map(decode, [it for it in items if it[0] != S.ACTIVATIONS]):
            bar.update()
            report.files_checked += 1
            report.bytes_checked += size
            if isinstance(value, Exception):
                inv.add(str(f.relative_to(store.path)), key, inv.region(key, chunk), _why(value))
        _check_coordinates(inv)
        stats = _statistics_inputs(inv)
        health = {layer: LayerHealth(layer) for layer in store.layout.layers}
        for key, f, chunk, value, size in pool.map(decode, [it for it in items if it[0] == S.ACTIVATIONS]):
            bar.update()
            report.files_checked += 1
            report.bytes_checked += size
            rel = str(f.relative_to(store.path))
            if isinstance(value, Exception):
                inv.add(rel, key, inv.region(key, chunk), _why(value))
            elif stats is not None:
                _activation_health(inv, rel, chunk, value, stats, health)
    report.layers = list(health.values())
    report.seconds = time.perf_counter() - started
    return report


def _check_coordinates(inv: _Inventory) -> None:
    """The root's coordinates against the attributes, the copies in ``features`` and ``generation``
    against the root's (read whole: a missing file reads as fill values and differs)."""

    def read(key: str) -> np.ndarray | None:
        try:
            return np.asarray(inv.arrays[key][...])
        except Exception:  # a damaged file: decoding names it
            return None

    keys = [
        k
        for k, a in inv.arrays.items()
        if is_coordinate(k, dims(a))
        and k not in inv.damaged
        and ("/" not in k or k.split("/")[0] in FLAGGED_GROUPS)
    ]  # results are checked by their checksums and files: their labels need not be the root's
    root = {k: v for k in keys if "/" not in k and (v := read(k)) is not None}
    for key in sorted(keys, key=lambda k: "/" in k):  # the root's first: the copies are compared with it
        if "/" in key and key.rpartition("/")[2] in inv.damaged:
            continue
        values = root.get(key) if "/" not in key else read(key)
        why = None if values is None else coordinate_errors(inv.store, key, values, root)
        if why is not None:
            inv.add(f"{key}/{chunk_key((0,))}", key, Region(None, None, None), why)


def _statistics_inputs(inv: _Inventory) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Flags, token counts and recorded NaN/inf counts, if none of their files is damaged."""
    needed = (S.COMPLETE, S.N_TOKENS, S.NONFINITE)
    if any(k in inv.damaged or k not in inv.arrays for k in needed):
        return None
    flags, n_tokens, recorded = (np.asarray(inv.arrays[k][...]) for k in needed)
    flags = flags.astype(bool)
    for j, block in wrong_token_counts(inv.store, flags, n_tokens):
        chunk = (0, block)
        inv.add(f"{S.N_TOKENS}/{chunk_key(chunk)}", S.N_TOKENS, inv.region(S.N_TOKENS, chunk),
                f"records token counts other than {inv.store.layout.languages[j]!r}'s sequence length for "
                "flagged samples: the file was changed on disk")  # fmt: skip
    return None if S.N_TOKENS in inv.damaged else (flags, n_tokens, recorded)


def _activation_health(
    inv: _Inventory,
    rel: str,
    chunk: tuple[int, ...],
    value: np.ndarray,
    stats: tuple[np.ndarray, np.ndarray, np.ndarray],
    health: dict[int, LayerHealth],
) -> None:
    """Count one activation shard's NaN/inf and float16 overflow; a count other than the recorded one
    names the file (the bytes changed on disk), not the model."""
    flags, n_tokens, recorded = stats
    i, j, b = chunk[0], chunk[1], chunk[2]
    spb = inv.store.layout.samples_per_shard
    sel = slice(b * spb, (b + 1) * spb)
    bad, top, over = activation_stats(value[0, 0], flags[i, j, sel], n_tokens[j, sel])
    noted = int(np.where(flags[i, j, sel], np.maximum(recorded[i, j, sel], 0), 0).sum())
    if bad != noted and S.NONFINITE not in inv.damaged:
        inv.add(rel, S.ACTIVATIONS, inv.region(S.ACTIVATIONS, chunk),
                f"holds {bad} NaN/inf values over real tokens of flagged samples where the extraction "
                f"recorded {noted}: the file was changed on disk")  # fmt: skip
        return
    h = health[inv.store.layout.layers[i]]
    h.nonfinite += bad
    h.recorded_nonfinite += noted
    h.max_abs = max(h.max_abs, top)
    h.float16_overflow += over


def _why(error: BaseException) -> str:
    return f"cannot be decoded ({type(error).__name__}: {error})"
