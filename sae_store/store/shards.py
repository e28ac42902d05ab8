"""Whole-shard encoding and decoding of sharded arrays on a pool of threads.

zarr-python encodes and decodes a shard's inner chunks one event-loop task at a time, with a copy
or two per chunk and a fill-value scan of every chunk. For the activations (float32 shards of
``samples_per_shard`` one-sample chunks) this module does the same work directly: each inner chunk is
encoded or decoded by the array's own codec (Blosc and Zstd release the GIL) on a thread of the
caller's pool, straight from and into the caller's numpy memory, and a shard file is written
atomically (temporary file + rename) exactly as zarr's ``LocalStore`` writes it. The bytes are those
zarr writes - inner chunks in order (each followed by its CRC32C when the array's codecs end with
``crc32c``), then the index of (offset, length) pairs and its CRC32C; chunks equal to the fill value
are left out and a shard of only such chunks is deleted - so every Zarr v3 reader reads the files
and zarr-python's own reads and writes stay interchangeable with these.
"""

from __future__ import annotations

import errno
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

from sae_store.errors import SaeStoreError

#: Offset and length of a chunk that is not in the shard (it holds only the fill value).
_MISSING = np.uint64(2**64 - 1)
_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


#: One encoded inner chunk: its compressed bytes, then its CRC32C when the array has checksums.
Encoded = tuple[bytes, ...]


def crc32c(data: bytes | memoryview) -> bytes:
    """The CRC32C of ``data`` as the four little-endian bytes the ``crc32c`` codec appends."""
    # the C implementation takes bytes or a numpy array (no copy), not a writable memoryview
    view = np.frombuffer(data, dtype=np.uint8) if isinstance(data, memoryview) else data
    return google_crc32c.value(view).to_bytes(4, "little")


def _inner_compressor(codecs: Sequence[Any], name: str) -> Any:
    """The numcodecs codec equal to the array's bytes-to-bytes codec (zarr builds the same one)."""
    if isinstance(codecs[-1], Crc32cCodec):
        codecs = codecs[:-1]
    if len(codecs) == 1:
        return None
    codec = codecs[1]
    if isinstance(codec, BloscCodec) and len(codecs) == 2:
        return numcodecs.Blosc.from_config(
            {
                "cname": codec.cname.value,
                "clevel": codec.clevel,
                "shuffle": _BLOSC_SHUFFLE[codec.shuffle.value],
                "blocksize": codec.blocksize,
                "typesize": codec.typesize,
            }
        )
    if isinstance(codec, ZstdCodec) and len(codecs) == 2:
        return numcodecs.Zstd.from_config({"level": codec.level, "checksum": codec.checksum})
    raise SaeStoreError(f"array {name!r} uses codecs {list(codecs)}; sae-store reads and writes only one of "
                        "Blosc or Zstd after the bytes codec, then an optional crc32c")  # fmt: skip


@dataclass(frozen=True)
class ShardCodec:
    """Encoder and decoder of the shard files of one sharded array whose shards split along one axis.

    Build it with :meth:`for_array`; ``axis`` is the array axis along which a shard holds several
    inner chunks (``per_shard`` of them, one index each).
    """

    root: Path
    array_path: str
    key: Callable[[tuple[int, ...]], str]
    shard_shape: tuple[int, ...]
    axis: int
    per_shard: int
    dtype: np.dtype
    fill_value: Any
    compressor: Any
    checksum: bool = False
    """Each inner chunk ends with the CRC32C of its compressed bytes (the ``crc32c`` codec)."""

    @classmethod
    def for_array(cls, root: str | Path, arr: zarr.Array) -> ShardCodec:
        """The codec of ``arr`` (an array of the store at ``root``), checking its layout is one this
        module writes bit-identically to zarr: little-endian bytes, at most one compressor, the index
        at the end with a CRC32C, inner chunks splitting the shard along a single axis."""
        codecs = arr.metadata.codecs  # type: ignore[union-attr]
        sharding = codecs[0] if len(codecs) == 1 else None
        if not isinstance(sharding, ShardingCodec):
            raise SaeStoreError(f"array {arr.path!r} is not sharded; read it through zarr instead")
        inner = sharding.codecs
        index_ok = [type(c) for c in sharding.index_codecs] == [BytesCodec, Crc32cCodec]
        if not index_ok or sharding.index_location.value != "end" or not isinstance(inner[0], BytesCodec):
            raise SaeStoreError(f"array {arr.path!r} has a shard index layout sae-store does not write")
        shard, chunk = tuple(arr.shards or ()), tuple(sharding.chunk_shape)
        split = [i for i, (s, c) in enumerate(zip(shard, chunk, strict=True)) if s != c]
        if len(split) > 1:
            raise SaeStoreError(f"array {arr.path!r} splits its shards along several axes {split}")
        axis = split[0] if split else 0
        dtype = np.dtype(arr.dtype).newbyteorder("<")
        return cls(
            root=Path(root),
            array_path=arr.path,
            key=arr.metadata.encode_chunk_key,
            shard_shape=shard,
            axis=axis,
            per_shard=shard[axis] // chunk[axis],
            dtype=dtype,
            fill_value=arr.metadata.fill_value,
            compressor=_inner_compressor(inner, arr.path),
            checksum=isinstance(inner[-1], Crc32cCodec),
        )

    def path(self, coords: tuple[int, ...]) -> Path:
        """The file of the shard at shard-grid ``coords``."""
        return self.root / self.array_path / self.key(coords)

    def is_fill(self, chunk: np.ndarray) -> bool:
        """True when ``chunk`` holds only the fill value (zarr then leaves it out of the shard)."""
        fill = self.fill_value
        if np.asarray(fill).dtype.kind == "f" and np.isnan(fill):
            return bool(np.isnan(chunk.flat[0])) and bool(np.isnan(chunk).all())
        return bool(chunk.flat[0] == fill) and bool((chunk == fill).all())

    def encode_chunk(self, chunk: np.ndarray) -> Encoded | None:
        """The stored parts of one inner chunk (its bytes, then its CRC32C if the array has checksums),
        or None when it holds only the fill value. The checksum stays a part of its own: the shard is
        written by a gathered write, so the chunk's bytes are never copied to append it."""
        if self.is_fill(chunk):
            return None
        data = np.ascontiguousarray(chunk, dtype=self.dtype)
        stored = bytes(self.compressor.encode(data)) if self.compressor is not None else data.tobytes()
        return (stored, crc32c(stored)) if self.checksum else (stored,)

    def assemble(self, chunks: Sequence[Encoded | None]) -> list[bytes] | None:
        """The shard file's parts in order (the stored chunks, the index, its CRC32C) from its encoded
        inner chunks (None: every chunk is fill, no file)."""
        index = np.full((len(chunks), 2), _MISSING, dtype="<u8")
        offset = 0
        for i, parts in enumerate(chunks):
            if parts:
                size = sum(len(p) for p in parts)
                index[i] = (offset, size)
                offset += size
        if offset == 0:
            return None
        index_bytes = index.tobytes()
        return [*(p for parts in chunks if parts for p in parts), index_bytes, crc32c(index_bytes)]

    def write(self, coords: tuple[int, ...], chunks: Sequence[Encoded | None]) -> int:
        """Write (or delete, when all chunks are fill) the shard at ``coords``; returns bytes written.

        The parts go to the file in one gathered write (no joined copy of the shard). The file appears
        whole or not at all: a killed writer leaves ``<key>.<hex>.partial``, which
        :meth:`~sae_store.store.ActivationStore.remove_partial_files` clears.
        """
        path = self.path(coords)
        parts = self.assemble(chunks)
        if parts is None:
            path.unlink(missing_ok=True)
            return 0
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.partial")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                size = _write_all(fd, parts)
            finally:
                os.close(fd)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def read_index(self, tail: bytes, where: Path) -> np.ndarray:
        """The (chunks, 2) offsets and lengths from a shard file's last ``index_bytes`` bytes, checked
        against their CRC."""
        if len(tail) < self.index_bytes:
            raise SaeStoreError(f"shard file {str(where)!r} is truncated ({len(tail)} bytes)")
        index_bytes = tail[:-4]
        if crc32c(index_bytes) != tail[-4:]:
            raise SaeStoreError(f"shard file {str(where)!r} is damaged: its index checksum does not match")
        return np.frombuffer(index_bytes, dtype="<u8").reshape(self.per_shard, 2)

    @property
    def index_bytes(self) -> int:
        """Size of the index at the end of a shard file (offset and length per chunk, CRC32C)."""
        return self.per_shard * 16 + 4

    def decode_bytes(self, data: bytes | memoryview | None, out: np.ndarray) -> None:
        """Decode one inner chunk from its stored bytes (None: not stored, the fill value) into ``out``.

        Raises
        ------
        ChecksumError
            If the array has checksums and the chunk's bytes do not match its CRC32C.
        """
        if data is not None and self.checksum:
            view = memoryview(data)
            if len(view) < 4 or crc32c(view[:-4]) != view[-4:]:
                raise ChecksumError("its checksum does not match: the bytes were changed on disk")
            data = view[:-4]
        if data is None:
            out[...] = self.fill_value
        elif self.compressor is None:
            out[...] = np.frombuffer(data, dtype=self.dtype).reshape(out.shape)
        else:
            self.compressor.decode(data, out=out)


class ChecksumError(SaeStoreError):
    """A stored chunk's bytes do not match their CRC32C."""


class OpenShard:
    """A shard file opened for reading: its index is read once, and each inner chunk's bytes only when
    it is decoded (``os.pread`` into a buffer of the calling thread, so threads decode concurrently
    with no whole-file copy). A missing file reads as fill values. Use it as a context manager."""

    def __init__(self, codec: ShardCodec, coords: tuple[int, ...]) -> None:
        self.codec, self.path = codec, codec.path(coords)
        self.index: np.ndarray | None = None
        try:
            self.fd: int | None = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self.fd = None
            return
        try:
            size = os.fstat(self.fd).st_size
            tail = os.pread(self.fd, codec.index_bytes, max(size - codec.index_bytes, 0))
            self.index = codec.read_index(tail, self.path)
        except BaseException:
            self.close()
            raise

    def decode(self, c: int, out: np.ndarray) -> None:
        """Decode inner chunk ``c`` into ``out`` (its shape, contiguous)."""
        if self.index is None or self.index[c, 0] == _MISSING:
            self.codec.decode_bytes(None, out)
            return
        offset, length = int(self.index[c, 0]), int(self.index[c, 1])
        buf = _chunk_buffer(length)
        if self.fd is None or os.preadv(self.fd, [buf], offset) != length:
            raise SaeStoreError(f"shard file {str(self.path)!r} is truncated: chunk {c} is cut short")
        try:
            self.codec.decode_bytes(buf, out)
        except ChecksumError as e:
            raise ChecksumError(f"shard file {str(self.path)!r} is damaged: chunk {c}: {e}") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> OpenShard:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _write_all(fd: int, parts: Sequence[bytes]) -> int:
    """Write ``parts`` to ``fd`` with as few ``writev`` calls as the system takes; returns the bytes."""
    views, total = [memoryview(p) for p in parts if len(p)], 0
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        if n <= 0:
            raise OSError(errno.EIO, "writev wrote nothing")
        total += n
        while views and n >= len(views[0]):
            n -= len(views.pop(0))
        if n:
            views[0] = views[0][n:]
    return total


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
_local = threading.local()


def _chunk_buffer(n: int) -> memoryview:
    """``n`` bytes of this thread's read buffer (grown when needed, reused by every later read)."""
    buf: bytearray | None = getattr(_local, "buffer", None)
    if buf is None or len(buf) < n:
        buf = _local.buffer = bytearray(n)
    return memoryview(buf)[:n]


def _map(pool: Executor | None, fn: Callable[..., Any], *items: Iterable[Any]) -> list[Any]:
    return list(pool.map(fn, *items) if pool is not None else map(fn, *items))


def read_shards(
    codec: ShardCodec,
    parts: Sequence[tuple[tuple[int, ...], np.ndarray, Sequence[int] | None]],
    *,
    pool: Executor | None = None,
) -> None:
    """Decode chunks of several shards: ``parts`` holds ``(coords, out, chunks)`` as for
    :func:`read_shard`; every chunk of every shard is one task on ``pool``, straight into ``out``."""
    shards: list[OpenShard] = []
    try:
        tasks: list[tuple[OpenShard, np.ndarray, int]] = []
        for coords, out, chunks in parts:
            shards.append(shard := OpenShard(codec, coords))
            wanted = range(min(out.shape[codec.axis], codec.per_shard)) if chunks is None else chunks
            tasks += [(shard, _row(out, codec.axis, c), c) for c in wanted]
        if tasks:
            _map(pool, lambda shard, row, c: shard.decode(c, row), *zip(*tasks, strict=True))
    finally:
        for shard in shards:
            shard.close()


def read_shard(
    codec: ShardCodec,
    coords: tuple[int, ...],
    out: np.ndarray,
    *,
    chunks: Sequence[int] | None = None,
    pool: Executor | None = None,
) -> None:
    """Decode the inner chunks ``chunks`` (default: as many as ``out`` holds) of shard ``coords``.

    Chunk ``c`` goes to row ``c`` of ``out`` along ``codec.axis``; ``out`` has the shard's shape on
    the other axes and rows not asked for are left alone. A missing shard file reads as fill values.
    The chunks are decoded on ``pool``'s threads, straight into ``out``.
    """
    read_shards(codec, [(coords, out, chunks)], pool=pool)


def _row(out: np.ndarray, axis: int, k: int) -> np.ndarray:
    index: list[Any] = [slice(None)] * out.ndim
    index[axis] = slice(k, k + 1)
    return out[tuple(index)]


def encode_shard(
    codec: ShardCodec, values: np.ndarray, *, pool: Executor | None = None
) -> list[Encoded | None]:
    """The encoded inner chunks of one shard's ``values`` (the shard's shape), on ``pool``'s threads."""
    return _map(pool, codec.encode_chunk, [_row(values, codec.axis, k) for k in range(codec.per_shard)])
