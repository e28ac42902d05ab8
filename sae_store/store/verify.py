"""Checking a store's data (``sae-store verify``, ``status --verify``) and repairing damaged blocks.

:func:`check_flags` is cheap (file existence only): every block flagged complete must have its
files, and the flags themselves must exist. :func:`verify_store` also decodes every chunk file of
the root arrays, so a truncated or garbled file is named; and it counts, per layer, the NaN/inf
values over real tokens of flagged samples and the values beyond float16's range.
:func:`repair_store` deletes damaged files and clears the flags of exactly the blocks they held,
so that ``sae-store extract`` redoes those blocks and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm

from sae_store.store import schema as S
from sae_store.store.core import ActivationStore
from sae_store.store.lock import ignoring_lock_dir, interruption, register_extraction
from sae_store.store.verify_report import LayerHealth, Problem, Region, VerifyReport

#: Largest finite float16 value.
FLOAT16_MAX = 65504.0
#: Arrays whose files must exist for every flagged block. (The small per-block arrays are not
#: listed: zarr writes no file for a chunk that is all fill value, e.g. ``nonfinite`` of 0.)
FLAGGED_DATA = (S.ACTIVATIONS,)


def _arrays(store: ActivationStore) -> dict[str, zarr.Array]:
    with ignoring_lock_dir():
        group = zarr.open_group(str(store.path), mode="r", use_consolidated=False)
        return dict(group.arrays())


def _file_shape(arr: zarr.Array) -> tuple[int, ...]:
    return tuple(arr.shards or arr.chunks)


def _region(store: ActivationStore, arr: zarr.Array, key: tuple[int, ...]) -> Region:
    dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
    size = _file_shape(arr)
    span = {
        d: (k * n, min((k + 1) * n, length))
        for d, k, n, length in zip(dims, key, size, arr.shape, strict=True)
    }
    lay, lang = store.layout.layers, store.layout.languages
    return Region(
        layers=tuple(lay[slice(*span[S.LAYER])]) if S.LAYER in span else None,
        languages=tuple(lang[slice(*span[S.LANGUAGE])]) if S.LANGUAGE in span else None,
        samples=span.get(S.SAMPLE),
    )


def _files(store: ActivationStore, name: str, arr: zarr.Array) -> Iterator[tuple[Path, tuple[int, ...]]]:
    """Every chunk file of ``arr`` on disk with its chunk-grid key (temporary files aside)."""
    folder = store.path / name / "c"
    if not folder.is_dir():
        return
    for root, _, names in os.walk(folder):
        for n in names:
            f = Path(root) / n
            parts = f.relative_to(folder).parts
            if len(parts) == arr.ndim and all(p.isdigit() for p in parts):
                yield f, tuple(int(p) for p in parts)


def _selection(arr: zarr.Array, key: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(k * n, (k + 1) * n) for k, n in zip(key, _file_shape(arr), strict=True))


def _missing_array(store: ActivationStore, name: str) -> Problem:
    return Problem(f"{name}/zarr.json", name, Region(None, None, None), "the array is missing (no zarr.json)")


def check_flags(store: ActivationStore) -> VerifyReport:
    """Cheap checks (no decoding): the flag array exists, and every flagged block has its files."""
    report = VerifyReport(store.path, interruption(store.path))
    arrays = _arrays(store)
    missing = [name for name in (*FLAGGED_DATA, S.COMPLETE) if name not in arrays]
    report.problems += [_missing_array(store, name) for name in missing]
    if S.COMPLETE in missing:
        return report
    try:
        flags = np.asarray(arrays[S.COMPLETE][...], dtype=bool)
    except Exception as e:  # a damaged flag file: verify names it
        report.problems.append(
            Problem(
                f"{S.COMPLETE}/c", S.COMPLETE, Region(None, None, None), f"cannot be read ({e}); run verify"
            )
        )
        return report
    for name in FLAGGED_DATA:
        if name in missing:
            continue
        arr = arrays[name]
        dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
        size = dict(zip(dims, _file_shape(arr), strict=True))
        index = dict(zip((S.LAYER, S.LANGUAGE, S.SAMPLE), np.nonzero(flags), strict=True))
        zero = np.zeros(int(flags.sum()), np.int64)
        keys = (
            np.stack([index.get(d, zero) // size[d] for d in dims], axis=-1) if len(zero) else zero[:, None]
        )
        for key in (tuple(int(k) for k in row) for row in np.unique(keys, axis=0)):
            rel = f"{name}/c/" + "/".join(map(str, key))
            if not (store.path / rel).is_file():
                report.problems.append(
                    Problem(
                        rel,
                        name,
                        _region(store, arr, key),
                        "missing, although its samples are flagged complete",
                    )
                )
    return report


def recorded_nonfinite(store: ActivationStore) -> dict[int, int]:
    """NaN/inf values per layer as recorded by the extraction (the ``nonfinite`` variable); 0s omitted."""
    try:
        counts = np.asarray(store.array(S.NONFINITE)[...])
    except KeyError:
        return {}
    per_layer = np.where(counts > 0, counts, 0).sum(axis=(1, 2))
    return {layer: int(n) for layer, n in zip(store.layout.layers, per_layer, strict=True) if n}


def _activation_stats(values: np.ndarray, flags: np.ndarray, n_tokens: np.ndarray) -> tuple[int, float, int]:
    """Over the real tokens of flagged samples of one shard ``[sample, token, hidden]``: NaN/inf count,
    largest finite |x|, count of finite values beyond float16's range."""
    bad, top, over = 0, 0.0, 0
    for s in np.flatnonzero(flags):
        v = values[s, : n_tokens[s]]
        hi, lo = float(v.max(initial=-np.inf)), float(v.min(initial=np.inf))
        if np.isfinite(hi) and np.isfinite(lo):  # the usual case: two passes, no temporary arrays
            peak = max(hi, -lo, 0.0)
            top = max(top, peak)
            if peak > FLOAT16_MAX:
                over += int(np.count_nonzero(np.abs(v) > FLOAT16_MAX))
            continue
        a = np.abs(v)
        finite = np.isfinite(a)
        bad += int(a.size - np.count_nonzero(finite))
        top = max(top, float(a[finite].max(initial=0.0)))
        over += int(np.count_nonzero(a[finite] > FLOAT16_MAX))
    return bad, top, over


def verify_store(
    store: ActivationStore, *, workers: int | None = None, progress: bool = False
) -> VerifyReport:
    """Decode every chunk file of the root arrays; report damaged and missing files, NaN/inf and
    float16 overflow per layer.

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
    report = check_flags(store)
    arrays = _arrays(store)
    damaged: set[tuple[str, tuple[int, ...]]] = set()

    def decode(item: tuple[str, Path, tuple[int, ...]]) -> tuple[str, Path, tuple[int, ...], Any, int]:
        name, f, key = item
        size = f.stat().st_size
        try:
            return name, f, key, np.asarray(arrays[name][_selection(arrays[name], key)]), size
        except Exception as e:  # any codec failure (zstd, blosc, crc32c, JSON of strings) is damage
            return name, f, key, e, size

    items = [(name, f, key) for name, arr in arrays.items() for f, key in _files(store, name, arr)]
    flags = n_tokens = recorded = None
    bar = tqdm(
        total=len(items), desc="verify", unit="file", disable=None if progress else True, dynamic_ncols=True
    )
    with bar, ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        results = list(pool.map(decode, [it for it in items if it[0] != S.ACTIVATIONS]))
        for name, f, key, value, size in results:
            bar.update()
            report.files_checked += 1
            report.bytes_checked += size
            if isinstance(value, Exception):
                damaged.add((name, key))
                report.problems.append(
                    Problem(
                        str(f.relative_to(store.path)), name, _region(store, arrays[name], key), _why(value)
                    )
                )
        readable = {S.COMPLETE, S.N_TOKENS, S.NONFINITE} <= set(arrays)
        if readable and not any(n in (S.COMPLETE, S.N_TOKENS, S.NONFINITE) for n, _ in damaged):
            flags = np.asarray(arrays[S.COMPLETE][...], dtype=bool)
            n_tokens = np.asarray(arrays[S.N_TOKENS][...])
            recorded = np.asarray(arrays[S.NONFINITE][...])
        health = {layer: LayerHealth(layer) for layer in store.layout.layers}
        for name, f, key, value, size in pool.map(decode, [it for it in items if it[0] == S.ACTIVATIONS]):
            bar.update()
            report.files_checked += 1
            report.bytes_checked += size
            if isinstance(value, Exception):
                report.problems.append(
                    Problem(
                        str(f.relative_to(store.path)), name, _region(store, arrays[name], key), _why(value)
                    )
                )
                continue
            if flags is None or n_tokens is None or recorded is None:
                continue
            i, j, b = key[0], key[1], key[2]
            sel = slice(b * store.layout.samples_per_shard, (b + 1) * store.layout.samples_per_shard)
            bad, top, over = _activation_stats(value[0, 0], flags[i, j, sel], n_tokens[j, sel])
            h = health[store.layout.layers[i]]
            h.nonfinite += bad
            h.max_abs = max(h.max_abs, top)
            h.float16_overflow += over
            h.recorded_nonfinite += int(
                np.where(flags[i, j, sel], np.maximum(recorded[i, j, sel], 0), 0).sum()
            )
    report.layers = list(health.values())
    report.seconds = time.perf_counter() - started
    return report


def _why(error: BaseException) -> str:
    return f"cannot be decoded ({type(error).__name__}: {error})"


def repair_store(
    store: ActivationStore, report: VerifyReport, *, command: str = "verify --repair"
) -> list[str]:
    """Delete the damaged files of ``report`` and clear the flags of exactly the blocks they held.

    Holds the claims of those blocks while it works, so it refuses while an extraction writes them.
    Returns what was done, as lines for people.
    """
    fixable = [p for p in report.problems if p.redoable and p.region.samples is not None]
    if not fixable:
        return []
    spb = store.layout.samples_per_shard
    blocks = sorted({p.region.samples[0] // spb for p in fixable if p.region.samples is not None})
    done = []
    with register_extraction(store.path, blocks, command=command):
        complete = (
            store.array(S.COMPLETE, mode="r+") if (store.path / S.COMPLETE / "zarr.json").is_file() else None
        )
        for p in fixable:
            if p.error.startswith("cannot be decoded"):
                (store.path / p.file).unlink(missing_ok=True)
            if complete is not None and (
                p.array != S.COMPLETE or not p.error.startswith("cannot be decoded")
            ):
                rows = [store.layer_index(x) for x in (p.region.layers or store.layout.layers)]
                cols = [store.language_index(x) for x in (p.region.languages or store.layout.languages)]
                start, stop = p.region.samples  # type: ignore[misc]
                complete[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1, start:stop] = False
            done.append(f"cleared {p.file} ({p.region.describe()})")
    return done
