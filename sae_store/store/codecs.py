"""Zarr codecs for activations, chosen by :class:`StoreConfig`."""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, ZstdCodec

from sae_store.store.config import StoreConfig

_SHUFFLE = {"byte": "shuffle", "bit": "bitshuffle", "none": "noshuffle"}


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
