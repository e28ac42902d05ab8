"""The store's results: every group written after extraction is found, read and written here.

``features`` (``encode``), ``generation`` (``caption``), ``analysis/<name>`` (``analyze``) and
``analysis/intervene/<key>/layer_<L>`` (``intervene``) all go through these functions, the way
xarray's backends hide a file format behind one entry point; no other package opens the store's
groups. The policies live here once:

- **consolidated metadata**: sub-groups are read from their own metadata, never through the root's
  consolidated copy (array tasks add and replace groups concurrently, so that copy can lag); every
  write refreshes the root's consolidated metadata afterwards (under the store's lock), so
  ``xr.open_zarr(path)`` and ``xr.open_datatree(path)`` see the new group;
- **attributes**: dicts and lists are stored as JSON text (netCDF writers accept it) and decoded on
  reading (:func:`~sae_store.store.schema.encode_attrs`, :func:`~sae_store.store.schema.decode_attrs`);
- **axes**: a result covering some layers, languages or samples is stored on the store's whole axes
  (so the store opens as one aligned DataTree) and read back as the subset it covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from sae_store.errors import IncompleteError
from sae_store.store import schema as S
from sae_store.store.codecs import with_checksum
from sae_store.store.core import ActivationStore

#: Prefix of the attributes naming the subset of an axis a result covers (see :func:`_align`).
_SUBSET = "subset_"


def _node(store: ActivationStore, path: str) -> zarr.Group | None:
    node: Any = zarr.open_group(str(store.path), mode="r", use_consolidated=False)
    for part in [p for p in path.split("/") if p]:
        if part not in set(node.group_keys()):
            return None
        node = node[part]
    return node


def has_group(store: ActivationStore, path: str) -> bool:
    """Whether the store holds the group ``path`` (e.g. ``"analysis/bias"``) on disk now."""
    return _node(store, path) is not None


def subgroups(store: ActivationStore, path: str = "") -> tuple[str, ...]:
    """Names of the groups directly below ``path`` (the root by default), sorted; () if it is absent."""
    node = _node(store, path)
    return () if node is None else tuple(sorted(name for name, _ in node.groups()))


def group_attrs(store: ActivationStore, path: str) -> dict[str, Any]:
    """The attributes of group ``path``, JSON text decoded."""
    node = _node(store, path)
    if node is None:
        raise IncompleteError(f"the store {str(store.path)!r} has no {path!r} group")
    return S.decode_attrs(dict(node.attrs))


def update_group_attrs(store: ActivationStore, path: str, attrs: dict[str, Any]) -> None:
    """Set attributes of group ``path`` (dicts and lists as JSON text) and refresh the consolidated copy."""
    store.require_writable()
    group = zarr.open_group(str(store.path / path), mode="r+", zarr_format=3, use_consolidated=False)
    group.update_attributes(S.encode_attrs(attrs, keys=None))
    store.consolidate()


def read_group(store: ActivationStore, path: str, *, load: bool = False) -> xr.Dataset:
    """Group ``path`` as a Dataset (lazy unless ``load``): attributes decoded, a result read back as the
    subset of layers, languages and samples it covers."""
    ds = _select_subsets(store.dataset(path))
    return ds.load() if load else ds


def write_group(store: ActivationStore, path: str, ds: xr.Dataset) -> str:
    """Write ``ds`` as group ``path``, replacing what was there; returns ``path``.

    The layer, language and sample axes become the store's own (filled where ``ds`` covers a subset),
    dict- and list-valued attributes JSON text; then the root's consolidated metadata is refreshed.
    """
    store.require_writable()
    ds = _align(store, ds.copy())
    ds.attrs = S.encode_attrs(ds.attrs, keys=None)
    for var in ds.variables.values():  # every chunk with its checksum, as in the rest of the store
        var.encoding = {k: v for k, v in var.encoding.items() if k not in ("compressor", "compressors")}
        var.encoding["compressors"] = with_checksum()
    ds.to_zarr(store.path, group=path, mode="w", consolidated=False)
    store.consolidate()
    return path


def intervention_summaries(store: ActivationStore) -> dict[str, dict[int, dict[str, Any]]]:
    """The summary of every intervention experiment in the store, by result key and layer."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for key in subgroups(store, S.INTERVENE):
        for name in subgroups(store, f"{S.INTERVENE}/{key}"):
            layer = name.removeprefix(S.INTERVENE_LAYER_PREFIX)
            summary = group_attrs(store, f"{S.INTERVENE}/{key}/{name}").get("summary")
            if layer.isdigit() and isinstance(summary, dict):
                out.setdefault(key, {})[int(layer)] = summary
    return {k: dict(sorted(v.items())) for k, v in out.items() if v}


@dataclass(frozen=True)
class Labels:
    """Per-sample metadata of the store (small; read eagerly)."""

    sample: np.ndarray
    """Sample ids (str)."""
    gender: np.ndarray
    """``male``, ``female``, ``ambiguous`` or ``unknown`` (str)."""
    image: np.ndarray
    """Image paths relative to ``images_dir``."""
    captions: dict[str, np.ndarray]
    """Reference captions per language (newline-separated per sample)."""
    images_dir: str


def sibling_folder(store: ActivationStore, name: str) -> Path | None:
    """``name`` beside the store, if it is a folder (the pipeline puts ``saes/`` and ``results/`` there)."""
    path = store.path.parent / name
    return path if path.is_dir() else None


def read_labels(store: ActivationStore) -> Labels:
    """Sample ids, genders, image paths and captions of every sample of ``store`` (small; read eagerly)."""
    root = store.dataset()
    captions = root[S.CAPTION].load()
    return Labels(
        sample=strings(root[S.SAMPLE].values),
        gender=strings(root[S.GENDER].values),
        image=strings(root[S.IMAGE].values),
        captions={str(lang): strings(captions.sel(language=lang).values) for lang in root.language.values},
        images_dir=str(store.attrs.get("images_dir", "")),
    )


def strings(values: Any) -> np.ndarray:
    """An object array of Python ``str`` (zarr/xarray hand back numpy's StringDType, which casts poorly)."""
    return np.array([str(v) for v in np.asarray(values).ravel()], dtype=object).reshape(np.shape(values))


def _align(store: ActivationStore, ds: xr.Dataset) -> xr.Dataset:
    """``ds`` on the store's own ``layer``, ``language`` and ``sample`` axes; where it holds a subset of
    an axis, the others are filled (NaN, -1, False or ``""``) and the subset kept in ``subset_<dim>``."""
    full: dict[str, list[Any]] = {
        S.LAYER: list(store.layout.layers),
        S.LANGUAGE: list(store.layout.languages),
        S.SAMPLE: [str(s) for s in np.asarray(store.array(S.SAMPLE)[...])],
    }
    for dim, values in full.items():
        if dim not in ds.indexes:
            continue
        have = ds.indexes[dim].tolist()
        if have == values or not set(have) <= set(values):
            continue
        fill = {str(k): _fill(v.dtype) for k, v in ds.variables.items() if dim in v.dims and k != dim}
        ds = ds.reindex(
            {dim: np.asarray(values, dtype=object if isinstance(values[0], str) else None)}, fill_value=fill
        )
        ds.attrs[f"{_SUBSET}{dim}"] = [v.item() if isinstance(v, np.generic) else v for v in have]
    return ds


def _fill(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    return False if dtype.kind == "b" else ""


def _select_subsets(ds: xr.Dataset) -> xr.Dataset:
    """Undo :func:`_align`: keep only the ``subset_<dim>`` values of each axis."""
    for key in [k for k in ds.attrs if k.startswith(_SUBSET)]:
        values = ds.attrs.pop(key)
        ds = ds.sel({key.removeprefix(_SUBSET): json.loads(values) if isinstance(values, str) else values})
    return ds
