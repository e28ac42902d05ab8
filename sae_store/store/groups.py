"""Sub-groups of a store written by later steps (``features``, ...).

A sub-group repeats the root's ``layer``, ``language`` and ``sample`` coordinates (and the sample
coordinates ``image`` and ``gender``), so ``xr.open_zarr(path, group=name)`` is self-describing,
and holds its own arrays chunked like the root's (never spanning two shard blocks). It is built in
a hidden folder and renamed into place, so concurrent array tasks never see a half-made group;
the root's consolidated metadata is refreshed so the group can be found through it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from sae_store.store import group_schema as G
from sae_store.store import schema as S
from sae_store.store.codecs import with_checksum
from sae_store.store.core import ActivationStore
from sae_store.store.create import create_array

#: Root coordinates copied into every sub-group.
GROUP_COORDS = (S.LAYER, S.LANGUAGE, S.SAMPLE, *S.SAMPLE_COORDS)


def _write_1d(
    group: zarr.Group,
    name: str,
    values: np.ndarray,
    dim: str,
    attributes: dict[str, Any],
    *,
    chunks: tuple[int, ...] | None = None,
    fill_value: Any = None,
) -> None:
    """A one-dimensional array of a group (a coordinate or label codes), with its checksums."""
    is_str = values.dtype.kind in "TUO"
    arr = group.create_array(
        name,
        shape=values.shape,
        chunks=chunks or values.shape,
        dtype=str if is_str else values.dtype,
        fill_value=fill_value,
        dimension_names=[dim],
        attributes=attributes,
        compressors=with_checksum(),
    )
    # every file written, fill values too: a missing one is damage (sae-store verify)
    arr.with_config({"write_empty_chunks": True})[...] = values.astype(object) if is_str else values


def _copy_coordinate(root: zarr.Group, group: zarr.Group, name: str) -> None:
    src = root[name]
    assert isinstance(src, zarr.Array)  # the store's schema makes coordinates arrays
    dim = str((src.metadata.dimension_names or (name,))[0])  # type: ignore[union-attr]
    _write_1d(
        group, name, np.asarray(src[...]), dim, dict(src.attrs), chunks=src.chunks, fill_value=src.fill_value
    )


def ensure_consolidated(store: ActivationStore, name: str) -> None:
    """Refresh the root's consolidated metadata if it does not list group ``name`` yet."""
    if name not in store.zarr_group():
        store.consolidate()


def create_group(
    store: ActivationStore,
    name: str,
    variables: Mapping[str, S.VarSpec],
    *,
    sizes: Mapping[str, int] | None = None,
    coords: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
    root_coords: tuple[str, ...] = GROUP_COORDS,
) -> bool:
    """Create sub-group ``name`` of ``store`` unless it exists; True if this call created it.

    Parameters
    ----------
    variables
        The group's arrays; shapes follow the store's layout, plus ``sizes`` for the group's own
        dimensions (e.g. ``{"feature": 16384}``).
    coords
        1-D coordinate values of the group's own dimensions, named by their dimension.
    attrs
        The group's attributes (dicts and lists stored as JSON text).
    root_coords
        The root's coordinates the group repeats.
    """
    store.require_writable()
    target = store.path / name
    if "/" in name:  # a group below another (evaluation/<set>): its parents first
        zarr.open_group(str(store.path), mode="r+", zarr_format=3, use_consolidated=False).require_group(
            name.rsplit("/", 1)[0]
        )
    if not target.exists():
        tmp = target.parent / f".{target.name}.creating-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            group = zarr.open_group(
                str(tmp), mode="w", zarr_format=3, attributes=S.encode_attrs(dict(attrs or {}), keys=None)
            )
            root = store.zarr_group()
            for coord in root_coords:
                _copy_coordinate(root, group, coord)
                if f"{coord}{S.CODE_SUFFIX}" in root:  # gender_code, language_code: the labels as codes
                    _copy_coordinate(root, group, f"{coord}{S.CODE_SUFFIX}")
            for dim, values in (coords or {}).items():
                attrs = S.coordinate_attrs(dim) if dim == S.FEATURE else {"long_name": dim.replace("_", " ")}
                _write_1d(group, dim, values, dim, attrs)
                if values.dtype.kind in "UO":
                    _code_coordinate(group, dim, values)
            for var, spec in variables.items():
                create_array(group, var, spec, store.layout.shape(spec.dims, dict(sizes or {})))
            try:
                os.rename(tmp, target)
                created = True
            except OSError:  # another task created it first
                created = False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        created = False
    ensure_consolidated(store, name)
    return created


def create_features_group(
    store: ActivationStore, d_sae: int, roles: Sequence[str], attrs: Mapping[str, Any] | None = None
) -> bool:
    """Create the ``features`` group as ``encode`` lays it out (per-sample statistics of ``d_sae``
    features, in all and per token role of ``roles``) unless it exists; True if this call created it."""
    return create_group(
        store,
        S.FEATURES,
        {**G.feature_variables(store.layout, d_sae), **G.role_variables(store.layout, d_sae, len(roles))},
        sizes={S.FEATURE: d_sae, S.ROLE: len(roles)},
        coords={S.FEATURE: np.arange(d_sae, dtype=np.int32), S.ROLE: np.array(list(roles))},
        attrs=attrs,
    )


def _code_coordinate(group: zarr.Group, dim: str, values: np.ndarray) -> None:
    """Write ``<dim>_code`` beside string coordinate ``dim`` (integer codes with CF flags), so that
    Zarr readers without strings read the group's labels too."""
    coded = S.category_codes(values)
    if coded is None:  # text, not labels
        return
    codes, meanings = coded
    _write_1d(
        group, f"{dim}{S.CODE_SUFFIX}", codes, dim, S.flag_attrs(meanings, f"{dim.replace('_', ' ')} (code)")
    )


def delete_group(store: ActivationStore, name: str) -> None:
    """Remove sub-group ``name`` (single process only: never while array tasks write into it)."""
    store.require_writable()
    shutil.rmtree(store.path / name, ignore_errors=True)
    store.consolidate()


def grow_group(store: ActivationStore, name: str) -> None:
    """Extend every array of sub-group ``name`` along ``sample`` to the store's samples (after an
    append), copying the root's sample coordinates of the new samples."""
    store.require_writable()
    group = zarr.open_group(str(store.path / name), mode="r+", use_consolidated=False)
    n_new = store.layout.n_samples
    old = group[S.SAMPLE]
    assert isinstance(old, zarr.Array)
    n_old = old.shape[0]
    for _, arr in group.arrays():
        dims = list(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
        if S.SAMPLE in dims:
            arr.resize(tuple(n_new if d == S.SAMPLE else n for d, n in zip(dims, arr.shape, strict=True)))
    for coord in (S.SAMPLE, *S.SAMPLE_COORDS, S.GENDER_CODE):
        if coord in group:
            store.array(coord, name, mode="r+")[n_old:n_new] = store.array(coord)[n_old:n_new]
    store.consolidate()
