"""Upgrading an older store to the current schema version in place (``sae-store migrate``), crash-safe.

Versions 2 and 3 change only small arrays and metadata (see ``docs/store-schema.md``). Version 2: the
per-block arrays get one file per shard block for all layers and languages, the labels larger
chunks, the integer label codes are added, every variable gets its attributes and the nested root
attributes become JSON text. Version 3: the ``generation`` group's arrays get one file per block for
every language, every group gets integer codes beside its categorical strings (``language_code``,
``gender_code``, ``direction_code``, ...), group attributes become JSON text, and ``token_role``'s
flag meanings end in ``_token``. Activations are not rewritten (their attributes are). An array
whose layout is already the current one only has its attributes updated.

Each array is rebuilt beside the store (in ``.sae-store-locks/migrate/``) and swapped in by two
renames; marker files record how far each array got, so a run killed at any point is finished by
running it again, and no array is ever lost: until the swap the old one is in place, after it the
new one. The root attributes switch to the current version last. The append lock is held throughout, so no
extraction or append runs meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
import zarr.storage

from sae_store.errors import SaeStoreError
from sae_store.faults import kill_point
from sae_store.store import group_schema as G
from sae_store.store import schema as S
from sae_store.store.checksums import add_checksums, arrays_without_checksums
from sae_store.store.core import ActivationStore, open_store
from sae_store.store.create import create_array, gender_codes
from sae_store.store.groups import GROUP_COORDS
from sae_store.store.lock import (
    append_lock,
    ignoring_lock_dir,
    lock_dir,
    read_append_lock,
    release_append_lock,
    state,
)
from sae_store.store.results import vocabularies, whole_chunks, with_codes
from sae_store.store.swap import swap_in
from sae_store.store.verify_checks import written_whole

log = logging.getLogger(__name__)

_MIGRATE = "migrate"
#: Sub-folder of the work folder in which arrays get their checksums.
_CHECKSUMS = "checksums"
_COMMAND = "migrate"
#: Arrays larger than this are copied one shard block of samples at a time.
_COPY_WHOLE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class _Plan:
    """One array of the current layout: where it goes, its spec and where its values come from."""

    key: str
    """Path in the store, e.g. ``complete`` or ``features/feature_mean``."""
    spec: S.VarSpec
    shape: tuple[int, ...]
    values: Callable[[tuple[slice, ...]], np.ndarray]
    """Values of a selection (read from the old store)."""


def migrate_store(path: str | Path, *, progress: bool = False) -> list[str]:
    """Upgrade the store at ``path`` to schema version :data:`~sae_store.store.schema.SCHEMA_VERSION`.

    Arrays without CRC32C checksums get them (:mod:`sae_store.store.checksums`), in stores of the
    current version too. Safe to run again after it was killed at any point: it finishes what was
    started. Returns what was done, as lines for people.

    Raises
    ------
    SchemaVersionError, StoreNotFoundError
        ``path`` is not a store of a version this code reads.
    StoreLockedError
        An append, an extraction or another migration is running.
    """
    store = open_store(path)
    work = lock_dir(store.path) / _MIGRATE
    stale = read_append_lock(store.path)
    if stale is not None and stale.command == _COMMAND and state(stale) == "dead":
        release_append_lock(store.path)  # left by a killed migration: this run finishes it
    if store.schema_version == S.SCHEMA_VERSION:
        if not arrays_without_checksums(store.path) and not (work / _CHECKSUMS).exists():
            if work.exists():  # killed after the switch, before cleaning up
                shutil.rmtree(work)
                with contextlib.suppress(OSError):
                    work.parent.rmdir()
            return [
                f"store {str(store.path)!r} already has schema version {S.SCHEMA_VERSION} and checksums on "
                "every chunk; nothing to do"
            ]
        with append_lock(store.path, command=_COMMAND), ignoring_lock_dir():
            added = add_checksums(store.path, work / _CHECKSUMS, progress=progress)
            shutil.rmtree(work)
        with contextlib.suppress(OSError):
            work.parent.rmdir()
        return [_checksums_line(store.path, added)]
    with append_lock(store.path, command=_COMMAND), ignoring_lock_dir(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        staging = zarr.open_group(str(work), mode="a", zarr_format=3)
        plans = list(_plans(store))
        for i, plan in enumerate(plans, 1):
            log.info("migrate: array %d/%d %s", i, len(plans), plan.key)
            _migrate_array(store.path, staging, plan)
        results = _result_groups(store)
        for path in results:
            _migrate_result(store, path, Path(str(staging.store.root)))  # type: ignore[attr-defined]
        _finish(store)
        added = add_checksums(store.path, work / _CHECKSUMS, progress=progress)
        shutil.rmtree(work)
    with contextlib.suppress(OSError):
        work.parent.rmdir()  # the lock folder, if nothing else is in it
    lines = [
        f"migrated {str(store.path)!r} from schema version {store.schema_version} to {S.SCHEMA_VERSION}: "
        f"{len(plans)} arrays rebuilt, added or checked, attributes updated; activations untouched"
    ]
    if results:
        lines.append(
            f"{len(results)} analysis results got integer label codes; they predate the record of the SAEs "
            f"their features came from, so reports and readers treat them as stale until they are rerun "
            f"(`sae-store analyze all {store.path}`, `sae-store intervene ...`)"
        )
    lines.append(_checksums_line(store.path, added))
    return lines


def _checksums_line(path: Path, added: list[str]) -> str:
    return (
        f"added CRC32C checksums to every chunk of {len(added)} arrays of {str(path)!r} "
        f"({', '.join(added[:6])}{' ...' if len(added) > 6 else ''}): `sae-store verify` now detects any "
        "changed byte"
    )


def _reader(group: zarr.Group, name: str) -> Callable[[tuple[slice, ...]], np.ndarray]:
    def read(sel: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(group[name][sel])  # type: ignore[index]

    return read


def _plans(store: ActivationStore) -> Iterator[_Plan]:
    """Every array of the current layout except the activations, in the order they are migrated."""
    lay = store.layout
    root = zarr.open_group(str(store.path), mode="r", use_consolidated=False)
    langs = list(lay.languages)
    specs: dict[str, S.VarSpec] = {
        S.LAYER: S.coordinate_spec(S.LAYER, len(lay.layers), lay),
        S.LANGUAGE: S.coordinate_spec(S.LANGUAGE, len(langs), lay),
        S.SAMPLE: S.coordinate_spec(S.SAMPLE, lay.n_samples, lay),
        S.TOKEN: S.coordinate_spec(S.TOKEN, lay.max_tokens, lay),
        S.HIDDEN: S.coordinate_spec(S.HIDDEN, lay.hidden_size, lay),
        **S.root_variables(lay, ()),
        S.LANGUAGE_CODE: S.language_code_spec(langs),
    }
    derived: dict[str, Callable[[tuple[slice, ...]], np.ndarray]] = {
        S.GENDER_CODE: lambda sel: gender_codes([str(g) for g in np.asarray(root[S.GENDER][sel])]),  # type: ignore[index]
        S.LANGUAGE_CODE: lambda sel: np.arange(len(langs), dtype=np.int8)[sel],
        S.EXTRACT_STATUS: lambda sel: (np.asarray(root[S.EXTRACT_ERROR][sel]) != "").astype(np.int8),  # type: ignore[index]
    }
    for name, spec in specs.items():
        if name != S.ACTIVATIONS:
            yield _Plan(name, spec, lay.shape(spec.dims), derived.get(name) or _reader(root, name))

    def copies(group: str, names: tuple[str, ...]) -> Iterator[_Plan]:
        """The root's coordinates a group repeats, and the codes of its labels."""
        for name in names:
            for key in (name, f"{name}{S.CODE_SUFFIX}"):
                if key in specs:
                    spec = specs[key]
                    yield _Plan(
                        f"{group}/{key}", spec, lay.shape(spec.dims), derived.get(key) or _reader(root, key)
                    )

    if S.FEATURES in root:
        group = root[S.FEATURES]
        assert isinstance(group, zarr.Group)
        d_sae = int(group.attrs["d_sae"])  # type: ignore[arg-type]
        yield from copies(S.FEATURES, GROUP_COORDS)
        feature = S.VarSpec((S.FEATURE,), "int32", (d_sae,), attrs=S.coordinate_attrs(S.FEATURE))
        yield _Plan(f"{S.FEATURES}/{S.FEATURE}", feature, (d_sae,), _reader(group, S.FEATURE))
        for name, spec in G.feature_variables(lay, d_sae).items():
            yield _Plan(
                f"{S.FEATURES}/{name}", spec, lay.shape(spec.dims, {S.FEATURE: d_sae}), _reader(group, name)
            )
    if S.GENERATION in root:
        group = root[S.GENERATION]
        assert isinstance(group, zarr.Group)
        new_tokens = int(group["generated_ids"].shape[-1])  # type: ignore[union-attr]
        yield from copies(S.GENERATION, G.GENERATION_COORDS)
        for name, spec in G.generation_variables(lay, new_tokens).items():
            shape = lay.shape(spec.dims, {G.NEW_TOKEN: new_tokens})
            yield _Plan(f"{S.GENERATION}/{name}", spec, shape, _reader(group, name))


def _migrate_array(store_path: Path, staging: zarr.Group, plan: _Plan) -> None:
    """Rebuild one array in ``staging`` and swap it in; resumes from whichever step a killed run reached.

    Markers: ``<name>.ready`` (the new array is whole), ``<name>.done`` (swapped in, old removed); see
    :func:`~sae_store.store.swap.swap_in`. An array already in the current layout keeps its files.
    """
    name = plan.key.replace("/", "--")
    work = Path(str(staging.store.root))  # type: ignore[attr-defined]
    ready, done = work / f"{name}.ready", work / f"{name}.done"
    if done.exists():
        return
    if not ready.exists() and _current_layout(store_path, plan):  # only its attributes to update
        zarr.open_array(str(store_path / plan.key), mode="r+").update_attributes(plan.spec.attrs)
        done.touch()
        kill_point("migrate.array_done")
        return
    swap_in(store_path, work, plan.key, functools.partial(_build, staging, plan))


def _current_layout(store_path: Path, plan: _Plan) -> bool:
    """Whether the store's array ``plan.key`` already has the planned layout (attributes aside)."""
    try:
        have = zarr.open_array(str(store_path / plan.key), mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.NodeTypeValidationError):
        return False
    want = create_array(zarr.open_group(zarr.storage.MemoryStore(), mode="w"), "a", plan.spec, plan.shape)
    a, b = have.metadata.to_dict(), want.metadata.to_dict()
    a.pop("attributes", None), b.pop("attributes", None)
    return a == b


def _result_groups(store: ActivationStore) -> list[str]:
    """Every group below ``analysis`` holding arrays (``analysis/bias``, ``analysis/intervene/k/layer_3``)."""
    if not (store.path / S.ANALYSIS).is_dir():
        return []
    group = zarr.open_group(str(store.path / S.ANALYSIS), mode="r", use_consolidated=False)
    return [
        f"{S.ANALYSIS}/{name}"
        for name, node in group.members(max_depth=None)
        if isinstance(node, zarr.Group) and any(True for _ in node.arrays())
    ]


def _migrate_result(store: ActivationStore, path: str, work: Path) -> None:
    """Add the integer codes of a result group's labels and store its attributes as JSON text."""
    done = work / f"{path.replace('/', '--')}.done"
    if done.exists():
        return
    ds = xr.open_zarr(store.path, group=path, consolidated=False, chunks=None)  # no dask: forks safely
    coded = with_codes(ds, vocabularies(store))
    new = [name for name in coded.data_vars if name not in ds.variables]
    if new:  # the codes (with their coordinates, unchanged), all again if a killed run wrote some
        part = coded[new]
        encoding = {k: v for k, v in whole_chunks(part).items() if k in new}
        part.to_zarr(
            store.path, group=path, mode="a", consolidated=False, encoding=encoding, write_empty_chunks=True
        )
    group = zarr.open_group(str(store.path / path), mode="r+", use_consolidated=False)
    group.update_attributes(S.encode_attrs(S.decode_attrs(dict(group.attrs)), keys=None))
    done.touch()
    kill_point("migrate.array_done")


def _build(staging: zarr.Group, plan: _Plan, folder: Path) -> None:
    """Build ``plan``'s array as ``folder`` (a member of ``staging``)."""
    arr = create_array(staging, folder.name, plan.spec, plan.shape)
    if written_whole(plan.key, plan.spec.dims):
        arr = arr.with_config({"write_empty_chunks": True})
    nbytes = int(np.prod(plan.shape)) * arr.dtype.itemsize
    if S.SAMPLE not in plan.spec.dims or nbytes <= _COPY_WHOLE_BYTES:
        arr[...] = plan.values(tuple(slice(None) for _ in plan.shape))
        return
    axis = plan.spec.dims.index(S.SAMPLE)
    step = (arr.shards or arr.chunks)[axis]
    for start in range(0, plan.shape[axis], step):
        sel = tuple(slice(start, start + step) if i == axis else slice(None) for i in range(len(plan.shape)))
        arr[sel] = plan.values(sel)


def _finish(store: ActivationStore) -> None:
    """Activations' attributes, root attributes, consolidation, and the version switch (last)."""
    lay = store.layout
    root = zarr.open_group(str(store.path), mode="r+")
    acts = root[S.ACTIVATIONS]
    spec = S.root_variables(lay, ())[S.ACTIVATIONS]
    acts.update_attributes(spec.attrs)
    attrs = {**store.attrs, "Conventions": S.CONVENTIONS}
    root.update_attributes(S.encode_attrs(attrs))
    for name in (S.FEATURES, S.GENERATION):  # nested group attributes as JSON text
        if name in root:
            group = zarr.open_group(str(store.path / name), mode="r+", use_consolidated=False)
            group.update_attributes(S.encode_attrs(S.decode_attrs(dict(group.attrs)), keys=None))
    kill_point("migrate.attributes")
    zarr.consolidate_metadata(str(store.path))
    kill_point("migrate.consolidated")
    info = {**store.attrs[S.ATTR_KEY], "schema_version": S.SCHEMA_VERSION}
    zarr.open_group(str(store.path), mode="r+").update_attributes(S.encode_attrs({S.ATTR_KEY: info}))
    if open_store(store.path).schema_version != S.SCHEMA_VERSION:  # pragma: no cover - a bug
        raise SaeStoreError("the schema version was not switched; run `sae-store migrate` again")
    kill_point("migrate.version")
