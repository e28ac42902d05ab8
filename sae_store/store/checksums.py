"""Adding CRC32C checksums to arrays written before every chunk carried one (``sae-store migrate``).

Arrays created by this version end the codecs of every chunk (every inner chunk of a shard) with
``crc32c``, so a changed byte is an error on read instead of a wrong value. An older array is
rebuilt with them beside the store and swapped in (:func:`sae_store.store.swap.swap_in`, crash-safe):

- a sharded array (the activations, the feature statistics) byte for byte: each stored inner chunk
  keeps its compressed bytes, followed by their CRC32C, under a new shard index - nothing is
  recompressed, so the activations cost one read and one write;
- any other array through zarr (its values copied into the same array with the checksum codec).

Each chunk is decoded first: damage already on disk is refused (``sae-store verify`` names it)
rather than sealed under a checksum.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr

from sae_store.errors import SaeStoreError
from sae_store.progress import progress_bar
from sae_store.store.shards import crc32c
from sae_store.store.swap import swap_in
from sae_store.store.verify_checks import written_whole

log = logging.getLogger(__name__)

_CRC32C = {"name": "crc32c"}
_MISSING = 2**64 - 1


def _inner(codecs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The codecs applied to each stored chunk: a shard's inner codecs, or the array's own."""
    first = codecs[0]
    return first["configuration"]["codecs"] if first["name"] == "sharding_indexed" else codecs


def array_metadata(
    store_path: Path, *, problems: Callable[[str, BaseException], None] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(key, zarr.json content)`` of every array of the store, groups included (lock folder aside).

    A ``zarr.json`` that cannot be parsed is passed to ``problems`` (key, error) if given, else raises.
    """
    for meta in sorted(store_path.rglob("zarr.json")):
        rel = meta.parent.relative_to(store_path)
        if not rel.parts or any(p.startswith(".") for p in rel.parts):
            continue
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError) as e:
            if problems is None:
                raise
            problems(rel.as_posix(), e)
            continue
        if isinstance(data, dict) and data.get("node_type") == "array":
            yield rel.as_posix(), data


def arrays_without_checksums(store_path: Path) -> list[str]:
    """Keys of the store's arrays whose chunks carry no CRC32C."""
    return [
        key
        for key, meta in array_metadata(store_path)
        if not any(c["name"] == "crc32c" for c in _inner(meta["codecs"]))
    ]


def _decompressor(codecs: list[dict[str, Any]]) -> Any:
    """The numcodecs codec undoing the bytes-to-bytes codec of ``codecs`` (None if there is none)."""
    rest = [c for c in codecs[1:] if c["name"] != "crc32c"]
    if not rest:
        return None
    if len(rest) > 1 or rest[0]["name"] not in ("blosc", "zstd"):
        raise SaeStoreError(f"codecs {rest} are not ones sae-store writes; cannot add checksums to them")
    config = dict(rest[0].get("configuration", {}))
    if rest[0]["name"] == "blosc":
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[config["shuffle"]]
        return numcodecs.Blosc(cname=config["cname"], clevel=config["clevel"], shuffle=shuffle)
    return numcodecs.Zstd(level=config.get("level", 0))


def _reshard(src: Path, dst: Path, n_chunks: int, decompressor: Any) -> None:
    """Shard file ``src`` rewritten as ``dst`` with each stored inner chunk followed by its CRC32C."""
    data = src.read_bytes()
    tail = data[-(n_chunks * 16 + 4) :]
    if len(data) < n_chunks * 16 + 4 or crc32c(tail[:-4]) != tail[-4:]:
        raise SaeStoreError(f"shard file {str(src)!r} is damaged (its index); run `sae-store verify` first")
    index = np.frombuffer(tail[:-4], dtype="<u8").reshape(n_chunks, 2)
    parts: list[bytes] = []
    new = np.full((n_chunks, 2), _MISSING, dtype="<u8")
    offset = 0
    for i, (start, length) in enumerate(index.tolist()):
        if start == _MISSING:
            continue
        chunk = data[start : start + length]
        try:
            if len(chunk) != length or (decompressor is not None and decompressor.decode(chunk) is None):
                raise ValueError("cut short")
        except Exception as e:  # any codec failure
            raise SaeStoreError(
                f"chunk {i} of shard file {str(src)!r} cannot be decoded ({e}); run `sae-store verify` first"
            ) from e
        parts += [chunk, crc32c(chunk)]
        new[i] = (offset, length + 4)
        offset += length + 4
    index_bytes = new.tobytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"".join([*parts, index_bytes, crc32c(index_bytes)]))


def _rebuild(store_path: Path, key: str, meta: dict[str, Any], dst: Path) -> None:
    """Array ``key`` of the store (metadata ``meta``) rebuilt with checksums as folder ``dst``."""
    src = store_path / key
    dst.mkdir(parents=True)
    new_meta = json.loads(json.dumps(meta))
    _inner(new_meta["codecs"]).append(dict(_CRC32C))
    (dst / "zarr.json").write_text(json.dumps(new_meta, indent=2))
    first = meta["codecs"][0]
    if first["name"] != "sharding_indexed":
        values = zarr.open_array(str(src), mode="r")[...]
        zarr.open_array(
            str(dst),
            mode="r+",
            config={"write_empty_chunks": written_whole(key, tuple(meta.get("dimension_names") or ()))},
        )[...] = values
        return
    shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
    chunk = first["configuration"]["chunk_shape"]
    n_chunks = int(np.prod([s // c for s, c in zip(shard, chunk, strict=True)]))
    decompressor = _decompressor(first["configuration"]["codecs"])
    for f in sorted((src / "c").rglob("*")) if (src / "c").is_dir() else []:
        rel = f.relative_to(src)
        if f.is_file() and all(p.isdigit() for p in rel.parts[1:]):
            _reshard(f, dst / rel, n_chunks, decompressor)


def _never(folder: Path) -> None:  # pragma: no cover - swap_in builds nothing for a ready array
    raise AssertionError(f"{folder} should have been built already")


def add_checksums(store_path: Path, work: Path, *, progress: bool = True) -> list[str]:
    """Give every array of the store without checksums its CRC32C per chunk; returns their keys.

    Call it holding the store's append lock; ``work`` is the folder arrays are rebuilt in.
    """
    work.mkdir(parents=True, exist_ok=True)
    for ready in sorted(work.glob("*.ready")):  # killed mid-swap: the array may be out of place now
        swap_in(store_path, work, ready.name.removesuffix(".ready").replace("--", "/"), _never)
    missing = set(arrays_without_checksums(store_path))
    todo = {key: meta for key, meta in array_metadata(store_path) if key in missing}
    bar = progress_bar(total=len(todo), unit="array", desc="checksums", enabled=progress)
    with bar:
        for key, meta in todo.items():
            log.info("adding checksums to %s", key)
            swap_in(store_path, work, key, functools.partial(_rebuild, store_path, key, meta))
            bar.update()
    return list(todo)
