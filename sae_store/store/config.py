"""Typed configuration of the activation store's on-disk encoding."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from sae_store.configbase import check_choice, check_known_keys
from sae_store.errors import ConfigError

Compressor = Literal["blosc-zstd", "blosc-lz4", "zstd", "none"]
Shuffle = Literal["byte", "bit", "none"]
Precision = Literal["bf16", "fp32"]


@dataclass(frozen=True)
class StoreConfig:
    """How activations are laid out and compressed on disk."""

    samples_per_shard: int = 16
    """Samples grouped in one shard file (one sample per chunk inside it). Sets the writers' unit of
    work and memory: a shard block of S samples for all 34 layers of Gemma-3-4B is S x ~97 MB."""

    compressor: Compressor = "blosc-zstd"
    """Codec for activations. Blosc zstd with byte shuffle stores bf16-exact float32 at ~1.5 bytes per
    value (see BENCHMARKS.md)."""

    clevel: int = 3
    """Compression level of the codec (1-9 for Blosc, 1-22 for Zstd)."""

    shuffle: Shuffle = "byte"
    """Blosc pre-filter: byte shuffle suits float32 holding bf16 values (their low bytes are zero)."""

    precision: Precision = "bf16"
    """"bf16": store float32 values rounded to bfloat16 (what Gemma computes on GPUs; exact when the
    model runs in bf16). "fp32": keep full float32. Never float16: Gemma 3 overflows it."""

    def __post_init__(self) -> None:
        if not isinstance(self.samples_per_shard, int) or self.samples_per_shard < 1:
            raise ConfigError(f"samples_per_shard must be a positive integer, got {self.samples_per_shard!r}")
        check_choice("compressor", self.compressor, get_args(Compressor))
        check_choice("shuffle", self.shuffle, get_args(Shuffle))
        check_choice("precision", self.precision, get_args(Precision))
        top = 22 if self.compressor == "zstd" else 9
        if not isinstance(self.clevel, int) or not 0 <= self.clevel <= top:
            raise ConfigError(
                f"clevel must be an integer in 0..{top} for {self.compressor!r}, got {self.clevel!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreConfig:
        check_known_keys(data, cls, "store config")
        return cls(**data)
