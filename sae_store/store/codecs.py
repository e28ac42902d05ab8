"""Zarr codecs for activations, chosen by :class:`StoreConfig`."""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, ZstdCodec

from sae_store.store.config import StoreConfig

_SHUFFLE = {"byte": "shuffle", "bit": "bitshuffle", "none": "noshuffle"}


def activation_compressors(config: StoreConfig) -> tuple[Any, ...]:
    """The bytes-to-bytes codecs applied to each activation chunk."""
    if config.compressor == "none":
        return ()
    if config.compressor == "zstd":
        return (ZstdCodec(level=config.clevel),)
    cname: Any = config.compressor.removeprefix("blosc-")
    shuffle: Any = _SHUFFLE[config.shuffle]
    return (BloscCodec(cname=cname, clevel=config.clevel, shuffle=shuffle),)


def round_to_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32.

    NaN and inf stay as they are; this is what ``tensor.to(torch.bfloat16).float()`` computes.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    rounded = ((bits + rounding) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isfinite(values), rounded, values).astype(np.float32, copy=False)
