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
  (so the store opens as one aligned DataTree) and read back as the subset it covers;
- **provenance**: a result under ``analysis/`` records the SAEs (and token roles) of the features it
  was computed from (:data:`SOURCE_ATTR`); once the features are encoded again with other SAEs it is
  stale (:func:`stale_reason`): :func:`read_group` refuses it and :func:`has_result` says no;
- **labels**: every categorical string variable (any string variable not in
  :data:`~sae_store.store.schema.TEXT_VARIABLES`) gets an integer ``<name>_code`` beside it with CF
  flags (:func:`with_codes`), so Zarr readers without strings read it; genders and languages use the
  root's codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from sae_store.errors import IncompleteError, StaleResultError
from sae_store.store import schema as S
from sae_store.store.codecs import with_checksum
from sae_store.store.core import ActivationStore

#: Prefix of the attributes naming the subset of an axis a result covers (see :func:`_align`).
_SUBSET = "subset_"
#: Attribute of a result group: the features it was computed from, ``{"saes": {layer: sha256 of the
#: SAE's weights}, "roles": [...]}`` (what ``encode`` recorded), compared by :func:`stale_reason`.
SOURCE_ATTR = "source_features"


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
    subset of layers, languages and samples it covers.

    Raises
    ------
    StaleResultError
        ``path`` is a result computed from features that were encoded again with other SAEs since.
    """
    reason = stale_reason(store, path)
    if reason is not None:
        raise StaleResultError(f"{reason}; run the step that wrote it again")
    ds = _select_subsets(store.dataset(path))
    return ds.load() if load else ds


def features_source(store: ActivationStore) -> dict[str, Any]:
    """What the features group is computed from now: each layer's SAE (sha256 of its weights) and the
    token roles; empty before ``encode``."""
    if not has_group(store, S.FEATURES):
        return {"saes": {}, "roles": []}
    attrs = group_attrs(store, S.FEATURES)
    saes = attrs.get("saes") or {}
    return {
        "saes": {str(k): v.get("sha256") for k, v in saes.items()},
        "roles": list(attrs.get("roles") or []),
    }


def stale_reason(store: ActivationStore, path: str) -> str | None:
    """Why the result ``path`` (a group under ``analysis/``) no longer matches the features group, or
    None if it does (or ``path`` is not a result): a layer it used was encoded again with another SAE,
    is no longer encoded, or the features summarise other token roles."""
    node = _node(store, path) if path.startswith(f"{S.ANALYSIS}/") else None
    if node is None or not any(True for _ in node.arrays()):  # not a result (``analysis/intervene``)
        return None
    source = S.decode_attrs(dict(node.attrs)).get(SOURCE_ATTR)
    if not isinstance(source, dict):
        return (
            f"{path!r} in the store {str(store.path)!r} was written before results recorded the SAEs of "
            "their features, so it may come from other SAEs than the features now hold"
        )
    now = features_source(store)
    changed = sorted(int(k) for k, sha in (source.get("saes") or {}).items() if now["saes"].get(k) != sha)
    if changed:
        return (
            f"{path!r} in the store {str(store.path)!r} was computed from other SAEs than the features now "
            f"hold: layers {changed} were encoded again with other SAEs (or not at all) since"
        )
    if source.get("saes") and list(source.get("roles") or []) != now["roles"]:
        return (
            f"{path!r} in the store {str(store.path)!r} was computed from features of the token roles "
            f"{source.get('roles')}; they now summarise {now['roles']}"
        )
    return None


def has_result(store: ActivationStore, path: str) -> bool:
    """Whether the store holds the group ``path`` and it is not stale (see :func:`stale_reason`)."""
    return has_group(store, path) and stale_reason(store, path) is None


def write_group(store: ActivationStore, path: str, ds: xr.Dataset) -> str:
    """Write ``ds`` as group ``path``, replacing what was there; returns ``path``.

    The layer, language and sample axes become the store's own (filled where ``ds`` covers a subset),
    dict- and list-valued attributes JSON text; then the root's consolidated metadata is refreshed.
    """
    store.require_writable()
    ds = with_codes(_align(store, ds.copy()), vocabularies(store))
    if path.startswith(f"{S.ANALYSIS}/"):
        ds.attrs[SOURCE_ATTR] = features_source(store)
    ds.attrs = S.encode_attrs(ds.attrs, keys=None)
    own, encoding = own_chunks(ds), whole_chunks(ds)
    for name, chunks in own.items():
        encoding[name] |= chunks
    ds.to_zarr(  # every file written, fill values too: a missing one is damage (sae-store verify)
        store.path,
        group=path,
        mode="w",
        consolidated=False,
        encoding=encoding,
        write_empty_chunks=True,
    )
    store.consolidate()
    return path


def intervention_summaries(store: ActivationStore) -> dict[str, dict[int, dict[str, Any]]]:
    """The summary of every intervention experiment in the store, by result key and layer (stale ones
    left out)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for key in subgroups(store, S.INTERVENE):
        for name in subgroups(store, f"{S.INTERVENE}/{key}"):
            layer = name.removeprefix(S.INTERVENE_LAYER_PREFIX)
            path = f"{S.INTERVENE}/{key}/{name}"
            summary = group_attrs(store, path).get("summary")
            if layer.isdigit() and isinstance(summary, dict) and stale_reason(store, path) is None:
                out.setdefault(key, {})[int(layer)] = summary
    return {k: dict(sorted(v.items())) for k, v in out.items() if v}


def encoded_layers(store: ActivationStore, features: xr.Dataset | None = None) -> list[int]:
    """The store's layers that ``encode`` wrote into the features group (``features``, if already
    read): those its ``saes`` attribute records, or, in a group without it, those with a flag set."""
    if features is None:
        features = read_group(store, S.FEATURES)
    saes = features.attrs.get("saes")
    if isinstance(saes, dict):
        recorded = {int(k) for k in saes}
        return [layer for layer in store.layout.layers if layer in recorded]
    flags = np.asarray(features[S.COMPLETE].values, dtype=bool)
    layers = [int(v) for v in features[S.LAYER].values]
    return [layer for i, layer in enumerate(layers) if flags[i].any()]


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


def whole_chunks(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Encoding of a result: one chunk (one file) per variable, whatever its size, with its CRC32C.
    Results are written and read whole; zarr's own choice would split a full-scale (34, 2, 16384)
    statistic into 16 files."""
    for var in ds.variables.values():  # the codecs are set here, not by what the values were read with
        var.encoding = {k: v for k, v in var.encoding.items() if k not in ("compressor", "compressors")}
    return {
        str(k): {
            "compressors": with_checksum(),
            **({"chunks": tuple(max(n, 1) for n in v.shape)} if v.ndim else {}),
        }
        for k, v in ds.variables.items()
    }


def own_chunks(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Chunks a writer set on variables of a result that is read a block at a time (the logit lens, read
    one feature at a time by the explorer), instead of :func:`whole_chunks`."""
    out = {}
    for k, v in ds.variables.items():
        chunks = v.encoding.get("chunks")
        if v.ndim and isinstance(chunks, tuple) and len(chunks) == v.ndim:
            out[str(k)] = {
                "chunks": tuple(min(max(c, 1), max(n, 1)) for c, n in zip(chunks, v.shape, strict=True))
            }
    return out


def vocabularies(store: ActivationStore) -> tuple[tuple[str, ...], ...]:
    """Label sets whose order fixes the codes of any variable holding only their labels: the root's
    genders and languages (so ``language_code`` means the same in every group)."""
    return (S.GENDER_NAMES, tuple(store.layout.languages))


def with_codes(ds: xr.Dataset, known: tuple[tuple[str, ...], ...] = ()) -> xr.Dataset:
    """``ds`` with an integer ``<name>_code`` (CF ``flag_values``/``flag_meanings``, -1 for ``""``)
    variable beside every categorical string variable or coordinate that has none (as the root's
    ``gender_code``). A variable whose labels all belong to one of ``known`` uses its order."""
    for name, var in list(ds.variables.items()):
        key = str(name)
        code = f"{key}{S.CODE_SUFFIX}"
        if var.dtype.kind not in "OUT" or key in S.TEXT_VARIABLES or code in ds.variables:
            continue
        labels = {str(v) for v in np.asarray(var.values, dtype=object).ravel()} - {""}
        order = next((k for k in known if labels <= set(k)), None)
        coded = S.category_codes(var.values, order)
        if coded is None:  # text with blanks: not labels
            continue
        values, meanings = coded
        long_name = str(var.attrs.get("long_name", key.replace("_", " ")))
        new = xr.Variable(var.dims, values, S.flag_attrs(meanings, f"{long_name} (code)"))
        ds = ds.assign({code: new})
    return ds


def is_label_code(ds: xr.Dataset, name: str) -> bool:
    """Whether variable ``name`` of ``ds`` is the integer code of a label variable beside it."""
    return name.endswith(S.CODE_SUFFIX) and name.removesuffix(S.CODE_SUFFIX) in ds.variables


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
