"""Zarr codecs: the activations' compressor chosen by :class:`StoreConfig`, and the CRC32C checksum
that follows the compressor of every array (so a changed byte on disk is an error, not a value)."""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from sae_store.store.config import StoreConfig

_SHUFFLE = {"byte": "shuffle", "bit": "bitshuffle", "none": "noshuffle"}
#: zarr's default bytes-to-bytes codec, for arrays that choose none (the bytes stores had before).
DEFAULT_COMPRESSORS: tuple[Any, ...] = (ZstdCodec(level=0, checksum=False),)


def with_checksum(compressors: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    """``compressors`` (default :data:`DEFAULT_COMPRESSORS`) followed by the ``crc32c`` codec: each
    stored chunk (each inner chunk of a shard) ends with the CRC32C of its compressed bytes."""
    return (*(DEFAULT_COMPRESSORS if compressors is None else compressors), Crc32cCodec())


def has_checksum(codecs: Any) -> bool:
    """Whether an array's codecs (``arr.metadata.codecs``) end each stored chunk with its CRC32C."""
    codecs = list(codecs)
    inner = getattr(codecs[0], "codecs", None) if len(codecs) == 1 else None  # sharded: the inner chunks
    return any(isinstance(c, Crc32cCodec) for c in (inner if inner is not None else codecs))


def activation_compressors(config: StoreConfig) -> tuple[Any, ...]:
    """The bytes-to-bytes codecs applied to each activation chunk."""
    codec, clevel, shuffle = config.settings
    if codec == "none":
        return ()
    if codec == "zstd":
        return (ZstdCodec(level=clevel),)
    cname: Any = codec.removeprefix("blosc-")
    return (BloscCodec(cname=cname, clevel=clevel, shuffle=_SHUFFLE[shuffle]),)  # type: ignore[arg-type]


def round_to_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32, in a new array.

    NaN and inf stay as they are; this is what ``tensor.to(torch.bfloat16).float()`` computes.
    """
    return round_to_bf16_(np.array(values, dtype=np.float32, order="C"))


def round_to_bf16_(values: np.ndarray) -> np.ndarray:
    """:func:`round_to_bf16` in place on a C-contiguous float32 array (one temporary of its size);
    returns ``values``. The writer calls it per sample chunk, fused with the chunk's statistics."""
    bits = values.view(np.uint32)
    rounded = bits >> 16
    rounded &= 1
    rounded += np.uint32(0x7FFF)
    rounded += bits
    rounded &= np.uint32(0xFFFF0000)
    np.copyto(bits, rounded, where=np.isfinite(values))
    return values
