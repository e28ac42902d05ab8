"""Opening an activation store and writing whole shard blocks into it."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
import zarr

from sae_store.errors import SaeStoreError, SchemaVersionError, StoreNotFoundError
from sae_store.faults import kill_point
from sae_store.store import schema as S
from sae_store.store.blocks import Block, block_ranges, check_aligned
from sae_store.store.lock import ignoring_lock_dir, require_unlocked
from sae_store.store.redo import missing_arrays, missing_arrays_message
from sae_store.store.shards import Encoded, OpenShard, ShardCodec, read_shards

log = logging.getLogger(__name__)


@dataclass
class ActivationStore:
    """An opened activation store.

    Use :func:`open_store` (or :func:`~sae_store.store.create.create_store`) to get one. Reading
    goes through :meth:`dataset` (lazy xarray); writing goes through :meth:`write`, which only
    accepts whole shard blocks of samples.
    """

    path: Path
    attrs: dict[str, Any]
    """Root attributes, nested ones decoded (see :func:`~sae_store.store.schema.decode_attrs`)."""
    _writable: dict[str, zarr.Array] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Root arrays opened by :meth:`write`, kept open for the next block (opening one reads its
    metadata; sub-groups can be deleted and made again, so their arrays are opened every time)."""

    def __repr__(self) -> str:
        lay = self.layout
        return (
            f"ActivationStore({str(self.path)!r}, schema v{self.schema_version}, "
            f"{len(lay.layers)} layers x {len(lay.languages)} languages x {lay.n_samples} samples x "
            f"{lay.max_tokens} tokens x {lay.hidden_size} hidden)"
        )

    @property
    def schema_version(self) -> int:
        return int(self.attrs[S.ATTR_KEY]["schema_version"])

    @property
    def model_folder(self) -> str | None:
        """The model folder the store was created for (``model.name_or_path``), if it records one."""
        folder = self.attrs.get("model", {}).get("name_or_path")
        return str(folder) if folder else None

    def require_writable(self) -> None:
        """Refuse to write into a store of an older schema version (it must be migrated first), or one
        that an append is changing or left half-changed (it must be unlocked first).

        Raises
        ------
        SchemaVersionError
            The store has an older schema version.
        SaeStoreError
            An array's metadata is missing (:meth:`require_arrays`).
        StoreLockedError
            An append holds the store's lock (running or dead), or left its journal.
        """
        if self.schema_version != S.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store {str(self.path)!r} has schema version {self.schema_version}; this sae-store reads "
                f"it but writes only version {S.SCHEMA_VERSION} stores: upgrade it in place with "
                f"`sae-store migrate {self.path}` first"
            )
        self.require_arrays()
        require_unlocked(self.path)

    def require_arrays(self) -> None:
        """Refuse a store that lacks any of the root's arrays (its ``zarr.json``): reads would give fill
        values and writes would put files into an array without metadata.

        Raises
        ------
        SaeStoreError
            Naming the missing arrays and how to get a whole store again.
        """
        missing = missing_arrays(self.path) if self.schema_version >= 2 else []
        if missing:
            raise SaeStoreError(missing_arrays_message(self.path, self.attrs, missing))

    @cached_property
    def layout(self) -> S.StoreLayout:
        a = self.attrs[S.ATTR_KEY]
        return S.StoreLayout(
            layers=tuple(a["layers"]),
            languages=tuple(a["languages"]),
            n_samples=int(a["n_samples"]),
            max_tokens=int(a["max_tokens"]),
            hidden_size=int(a["hidden_size"]),
            samples_per_shard=int(a["samples_per_shard"]),
        )

    @property
    def blocks(self) -> list[Block]:
        return block_ranges(self.layout.n_samples, self.layout.samples_per_shard)

    def zarr_group(self, group: str | None = None, *, mode: Literal["r", "r+"] = "r") -> zarr.Group:
        if mode != "r":
            self.require_writable()
        # sub-groups change under array tasks: reach them without the root's consolidated metadata
        consolidated = None if group is None else False
        root = zarr.open_group(str(self.path), mode=mode, zarr_format=3, use_consolidated=consolidated)
        return root if group is None else root[group]  # type: ignore[return-value]

    def array(self, name: str, group: str | None = None, *, mode: Literal["r", "r+"] = "r") -> zarr.Array:
        """One zarr array of the store (``group`` None is the root)."""
        arr = self.zarr_group(group, mode=mode)[name]
        if not isinstance(arr, zarr.Array):
            raise SaeStoreError(f"{name!r} in the store is a group, not an array")
        return arr

    def dataset(self, group: str | None = None, *, samples_per_chunk: int | None = None) -> xr.Dataset:
        """The store as a lazy xarray Dataset, with one dask chunk per shard block of samples.

        Dask chunks follow zarr's inner chunks by default (one sample each), which makes a
        34-layer store 136,000 tasks; shard-sized chunks keep reductions fast.
        """
        chunks = {S.SAMPLE: samples_per_chunk or self.layout.samples_per_shard}
        with warnings.catch_warnings():
            # label arrays (a few bytes per sample) have chunks of many blocks: splitting them is cheap
            warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks")
            # sub-groups change under array tasks: read from their own metadata (store/results.py)
            ds = xr.open_zarr(self.path, group=group, chunks=chunks, consolidated=group is None)
        if group is not None:  # a sub-group's nested attributes as dicts (the root keeps its JSON text)
            ds.attrs = S.decode_attrs(ds.attrs)
        return ds

    def layer_index(self, layer: int) -> int:
        """Position of ``layer`` on the layer dimension; refused, listing the stored ones, if absent."""
        return _position("layer", layer, self.layout.layers)

    def language_index(self, language: str) -> int:
        """Position of ``language`` on the language dimension; refused like :meth:`layer_index`."""
        return _position("language", language, self.layout.languages)

    def write(
        self,
        name: str,
        values: np.ndarray,
        *,
        start: int,
        layer: int | None = None,
        language: str | None = None,
        group: str | None = None,
        layers: Sequence[int] | None = None,
    ) -> None:
        """Write ``values`` for samples ``start:start+len`` of one (layer, language) of array ``name``.

        ``values`` holds the sample axis and the array's trailing dimensions. The sample range must
        cover whole shard blocks (:class:`~sae_store.errors.AlignmentError` otherwise). With
        ``layers`` (consecutive in the store) instead of ``layer``, ``values`` has a leading layer
        axis and all of them are written in one call, which lets zarr encode their shards in parallel.
        """
        arr = self._writable.get(name) if group is None else None
        if arr is None:
            arr = self.array(name, group, mode="r+")
            if group is None:
                self._writable[name] = arr
        dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
        n = arr.shape[dims.index(S.SAMPLE)]
        stop = start + values.shape[0 if layers is None else 1]
        check_aligned(start, stop, n, self.layout.samples_per_shard)
        index: list[Any] = []
        for d in dims:
            if d == S.LAYER and layers is not None:
                rows = [self.layer_index(x) for x in layers]
                if rows != list(range(rows[0], rows[0] + len(rows))):
                    raise SaeStoreError(f"layers {list(layers)} are not consecutive in the store")
                index.append(slice(rows[0], rows[0] + len(rows)))
            elif d == S.LAYER:
                if layer is None:
                    raise SaeStoreError(f"writing {name!r} needs a layer")
                index.append(self.layer_index(layer))
            elif d == S.LANGUAGE:
                if language is None:
                    raise SaeStoreError(f"writing {name!r} needs a language")
                index.append(self.language_index(language))
            elif d == S.SAMPLE:
                index.append(slice(start, stop))
            else:
                index.append(slice(None))
        arr[tuple(index)] = values

    def read_activations(
        self,
        layer: int,
        language: str,
        start: int,
        stop: int,
        *,
        out: np.ndarray | None = None,
        samples: Sequence[int] | np.ndarray | None = None,
        pool: Executor | None = None,
    ) -> np.ndarray:
        """Activations ``[sample, token, hidden]`` of samples ``start:stop`` (whole shard blocks) of one
        layer and language, every sample chunk one task on ``pool``'s threads (see :mod:`.shards`).

        With ``samples`` (indices relative to ``start``) only those samples are decoded; the other
        rows of ``out`` are left as they are.
        """
        check_aligned(start, stop, self.layout.n_samples, self.layout.samples_per_shard)
        shape = (stop - start, self.layout.max_tokens, self.layout.hidden_size)
        out = np.empty(shape, np.float32) if out is None else out
        if out.shape != shape:
            raise SaeStoreError(f"out has shape {out.shape}, but samples {start}:{stop} need {shape}")
        codec = self.activation_codec
        li, gi, per = self.layer_index(layer), self.language_index(language), codec.per_shard
        wanted = np.arange(stop - start) if samples is None else np.asarray(samples, dtype=np.int64)
        parts = []
        for first in range(start, stop, per):
            mine = wanted[(wanted >= first - start) & (wanted < first - start + per)] - (first - start)
            if len(mine):
                rows = out[first - start : first - start + per][None, None]
                parts.append(((li, gi, first // per, 0, 0), rows, mine.tolist()))
        read_shards(codec, parts, pool=pool)
        return out

    def write_activation_shard(
        self, layer: int, language: str, start: int, chunks: Sequence[Encoded | None]
    ) -> int:
        """Write the shard of samples ``start:`` (a shard block) of one layer and language from its
        sample chunks as encoded by ``activation_codec.encode_chunk``; returns the bytes written."""
        codec = self.activation_codec
        check_aligned(start, min(start + len(chunks), self.layout.n_samples), self.layout.n_samples,
                      codec.per_shard)  # fmt: skip
        if len(chunks) > codec.per_shard:
            raise SaeStoreError(f"{len(chunks)} chunks do not fit one shard of {codec.per_shard} samples")
        coords = (self.layer_index(layer), self.language_index(language), start // codec.per_shard, 0, 0)
        return codec.write(coords, [*chunks, *[None] * (codec.per_shard - len(chunks))])

    def open_shard(self, layer: int, language: str, start: int) -> OpenShard:
        """The activation shard of samples ``start:`` (a shard block) of one layer and language, opened
        for reading its sample chunks one by one (:class:`~sae_store.store.shards.OpenShard`)."""
        codec = self.activation_codec
        check_aligned(start, min(start + codec.per_shard, self.layout.n_samples), self.layout.n_samples,
                      codec.per_shard)  # fmt: skip
        coords = (self.layer_index(layer), self.language_index(language), start // codec.per_shard, 0, 0)
        return OpenShard(codec, coords)

    @cached_property
    def activation_codec(self) -> ShardCodec:
        """Encoder/decoder of the activations' shard files (see :mod:`sae_store.store.shards`)."""
        return ShardCodec.for_array(self.path, self.array(S.ACTIVATIONS))

    def remove_partial_files(self, start: int, stop: int) -> int:
        """Delete temporary files a killed writer left in the chunks of samples ``start:stop``.

        zarr writes each chunk or shard to ``<key>.<random>.partial`` and renames it into place; a
        process killed mid-write leaves that file behind. Call this only for whole blocks the caller
        owns (another writer's live temporary file would vanish). Returns how many were removed.
        """
        removed = 0
        for name, arr in self.zarr_group().arrays():
            dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
            chunks = self.path / name / "c"
            if S.SAMPLE not in dims or not chunks.is_dir():
                continue
            axis = dims.index(S.SAMPLE)
            per_file = (arr.shards or arr.chunks)[axis]
            for f in chunks.rglob("*.partial"):
                parts = f.relative_to(chunks).parts
                key = parts[axis].split(".")[0] if axis < len(parts) else ""
                first = int(key) * per_file if key.isdigit() else -1
                if first >= 0 and start <= first and min(first + per_file, arr.shape[axis]) <= stop:
                    f.unlink(missing_ok=True)
                    removed += 1
        return removed

    def read_flags(self, name: str = S.COMPLETE, group: str | None = None) -> np.ndarray:
        """Completion flags of shape (layer, language, sample) as a numpy bool array."""
        return np.asarray(self.array(name, group)[...], dtype=bool)

    def consolidate(self) -> None:
        """Rewrite the root's consolidated metadata, one process at a time.

        A group missing from the consolidated metadata is invisible to ``xr.open_zarr``. Array tasks
        add groups concurrently and then each consolidates; serialising them (an exclusive lock on
        the store folder itself) means the last one sees every group.
        """
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:  # some network file systems refuse flock
                log.warning("cannot lock %s (%s); consolidating without a lock", self.path, e)
            with ignoring_lock_dir(), warnings.catch_warnings():
                # zarr notes that consolidated metadata is not in the v3 spec yet: relied on knowingly
                warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
                kill_point("consolidate.locked")
                zarr.consolidate_metadata(str(self.path))
        finally:
            os.close(fd)  # closing releases the lock

    def config(self) -> dict[str, Any]:
        """The configuration the store was created with (as saved in its attributes)."""
        return dict(self.attrs.get("config", {}))


def _position(kind: str, value: Any, stored: tuple[Any, ...]) -> int:
    if value not in stored:
        raise SaeStoreError(f"{kind} {value!r} is not in the store; it holds {kind}s {list(stored)}")
    return stored.index(value)


def open_store(path: str | Path) -> ActivationStore:
    """Open an activation store, checking that it is one and that its schema version is understood.

    Raises
    ------
    StoreNotFoundError
        The path does not exist, or is not an sae-store activation store.
    SchemaVersionError
        The store was written by an incompatible version of the schema. Version 1 stores open
        for reading; writing into them raises this error naming ``sae-store migrate``.
    """
    path = Path(path)
    meta = path / "zarr.json"
    if not path.exists():
        raise StoreNotFoundError(f"no activation store at {str(path)!r}; create one with `sae-store init`")
    if not meta.is_file():
        raise StoreNotFoundError(
            f"{str(path)!r} exists but is not an activation store (no zarr.json); "
            "pass the store folder made by `sae-store init`"
        )
    try:
        attrs = S.decode_attrs(json.loads(meta.read_text()).get("attributes", {}))
    except (OSError, json.JSONDecodeError) as e:
        raise StoreNotFoundError(f"{str(meta)!r} is unreadable or not JSON: {e}") from e
    if S.ATTR_KEY not in attrs:
        raise StoreNotFoundError(
            f"{str(path)!r} is a Zarr group but not an sae-store activation store "
            f"(no {S.ATTR_KEY!r} attribute)"
        )
    version = attrs[S.ATTR_KEY].get("schema_version")
    if version not in S.READABLE_VERSIONS:
        raise SchemaVersionError(
            f"store {str(path)!r} has schema version {version!r}, but this sae-store understands "
            f"version {S.SCHEMA_VERSION}; use the sae-store release that wrote it "
            f"(it was written by sae-store {attrs[S.ATTR_KEY].get('version', '?')})"
        )
    return ActivationStore(path=path, attrs=attrs)


def check_before_work(path: str | Path, *, writes: bool) -> None:
    """What a command checks of its store before any work (a model loaded, a statistic computed): the
    store's arrays are all there and, for a command that ``writes``, that it may write now
    (:meth:`ActivationStore.require_writable`). A path that holds no store is left to the command."""
    if not (Path(path) / "zarr.json").is_file():
        return
    store = open_store(path)
    if writes:
        store.require_writable()
    else:
        store.require_arrays()
