"""What must be on disk, and values that must agree: the checks ``sae-store verify`` makes beside decoding.

- **Flagged data**: in the root and in the groups written block by block (``features``,
  ``generation``), every file of a per-sample array that holds a flagged sample must exist - a
  missing one would read as fill values. (Arrays that hold only fill values unless a sample failed,
  such as ``extract_error``, are exempt.)
- **Whole arrays**: the root's sample labels, and every array of a result group written with
  checksums (one file per variable, written even when it holds fill values), must have every file.
- **Coordinates**: the root's agree with the store's attributes, each group's copies with the root's.
- **Recorded statistics**: ``n_tokens`` equals the language's sequence length for flagged samples,
  and each activation shard holds as many NaN/inf values over real tokens as ``nonfinite`` records.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from sae_store.store import schema as S
from sae_store.store.core import ActivationStore
from sae_store.store.redo import BLOCK_ARRAYS, FLAGGED_GROUPS

#: Largest finite float16 value.
FLOAT16_MAX = 65504.0
#: Root arrays made by ``init`` whose every file must exist (their values are never all fill).
LABEL_ARRAYS = (S.SAMPLE, S.IMAGE, S.GENDER, S.GENDER_CODE, S.LANGUAGE, S.LANGUAGE_CODE)


def written_whole(key: str, array_dims: tuple[str, ...]) -> bool:
    """Whether every file of array ``key`` (dimensions ``array_dims``) is written, fill values too, when
    the array has checksums: results, the root's captions (which may be empty), and the coordinates
    and label codes of the groups written block by block."""
    in_group = key.split("/")[0] in FLAGGED_GROUPS and "/" in key
    return (
        key.startswith(f"{S.ANALYSIS}/") or key == S.CAPTION or (in_group and is_coordinate(key, array_dims))
    )


def dims(arr: zarr.Array) -> tuple[str, ...]:
    return tuple(str(d) for d in getattr(arr.metadata, "dimension_names", None) or ())


def file_shape(arr: zarr.Array) -> tuple[int, ...]:
    return tuple(arr.shards or arr.chunks)


def chunk_key(key: tuple[int, ...]) -> str:
    return "c/" + "/".join(map(str, key))


def is_coordinate(key: str, array_dims: tuple[str, ...]) -> bool:
    """Whether array ``key`` is a coordinate, a label code, or a group's copy of a sample label."""
    name = key.rpartition("/")[2]
    one_d = len(array_dims) == 1
    return one_d and (name == array_dims[0] or name.endswith(S.CODE_SUFFIX) or name in S.SAMPLE_COORDS)


def flagged_arrays(group: str, arrays: dict[str, zarr.Array]) -> list[str]:
    """Keys of the arrays of ``group`` ("" the root) whose files must exist for every flagged sample
    (or layer): the root's per-block arrays, and every array of a group written block by block (or
    layer by layer) that spans its flags' dimensions."""
    prefix = f"{group}/" if group else ""
    flag_dims = set(dims(arrays[f"{prefix}{S.COMPLETE}"]))
    out = []
    for key, arr in arrays.items():
        name = key.removeprefix(prefix)
        if not key.startswith(prefix) or "/" in name or name == S.COMPLETE or is_coordinate(key, dims(arr)):
            continue
        per_block = name in BLOCK_ARRAYS and name not in S.SPARSE_VARIABLES
        if (group and flag_dims <= set(dims(arr))) or (not group and per_block):
            out.append(key)
    return out


def flag_groups(arrays: dict[str, zarr.Array]) -> list[str]:
    """The root ("") and the groups with their own ``complete`` flags present in ``arrays``."""
    groups = [k.removesuffix(f"/{S.COMPLETE}") for k in arrays if k.endswith(f"/{S.COMPLETE}")]
    return [
        g
        for g in ("", *groups)
        if (g == "" and S.COMPLETE in arrays) or (g and g.split("/")[0] in FLAGGED_GROUPS)
    ]


def missing_flagged(
    arr: zarr.Array, flags: np.ndarray, flag_dims: tuple[str, ...]
) -> Iterator[tuple[int, ...]]:
    """Chunk-grid keys of ``arr`` that hold a flagged sample (``flags`` over ``flag_dims``)."""
    d = dims(arr)
    size = dict(zip(d, file_shape(arr), strict=True))
    index = dict(zip(flag_dims, np.nonzero(flags), strict=True))
    n = int(flags.sum())
    if not n:
        return
    cols = [index[x] // size[x] if x in index else np.zeros(n, np.int64) for x in d]
    for row in np.unique(np.stack(cols, axis=-1), axis=0):
        yield tuple(int(k) for k in row)


def whole_keys(arr: zarr.Array) -> Iterator[tuple[int, ...]]:
    """Every chunk-grid key of ``arr``."""
    grid = [-(-n // c) for n, c in zip(arr.shape, file_shape(arr), strict=True)]
    yield from itertools.product(*(range(g) for g in grid))


def coordinate_errors(
    store: ActivationStore, key: str, values: np.ndarray, root: dict[str, Any]
) -> str | None:
    """Why the decoded coordinate ``key`` is wrong (None if it is right): the root's against the
    store's attributes, a group's copy against the root's."""
    name = key.rpartition("/")[2]
    lay = store.layout
    expected: dict[str, Any] = {
        S.LAYER: np.asarray(lay.layers),
        S.LANGUAGE: np.asarray(lay.languages, dtype=object),
        S.TOKEN: np.arange(lay.max_tokens),
        S.HIDDEN: np.arange(lay.hidden_size),
        S.LANGUAGE_CODE: np.arange(len(lay.languages)),
    }
    want = root.get(name) if "/" in key else expected.get(name)
    if key == f"{S.FEATURES}/{S.FEATURE}":  # the SAE feature index
        want = np.arange(len(values))
    if want is None:
        return None
    if values.shape != np.shape(want) or not np.array_equal(
        values.astype(object), np.asarray(want).astype(object)
    ):
        where = "the root's" if "/" in key else "the store's attributes"
        return f"holds other values than {where} ({key} was changed on disk)"
    return None


def activation_stats(values: np.ndarray, flags: np.ndarray, n_tokens: np.ndarray) -> tuple[int, float, int]:
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


def wrong_token_counts(
    store: ActivationStore, flags: np.ndarray, n_tokens: np.ndarray
) -> list[tuple[int, int]]:
    """(language index, shard block) of ``n_tokens`` files whose flagged samples do not hold their
    language's sequence length (every sample of a language has the same, ``tokens_per_language``)."""
    per_lang = store.attrs.get("tokens_per_language", {})
    spb = store.layout.samples_per_shard
    flagged = np.asarray(flags.any(axis=0))  # (language, sample): flagged for some layer
    out = []
    for j, lang in enumerate(store.layout.languages):
        want = int(per_lang.get(lang, -1))
        if want < 0:
            continue
        wrong = np.flatnonzero(flagged[j] & (n_tokens[j] != want))
        out += sorted({(j, int(s) // spb) for s in wrong})
    return out
