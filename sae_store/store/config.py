"""Typed configuration of the activation store's on-disk encoding."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, get_args

from sae_store.configbase import check_choice, check_known_keys
from sae_store.errors import ConfigError

Compressor = Literal["fast", "balanced", "compact", "blosc-zstd", "blosc-lz4", "zstd", "none"]
Shuffle = Literal["byte", "bit", "none"]
Precision = Literal["bf16", "fp32"]
Codec = Literal["blosc-zstd", "blosc-lz4", "zstd", "none"]


class CodecSettings(NamedTuple):
    """The codec a :class:`StoreConfig` resolves to (a preset's, or the one named, with its options)."""

    codec: Codec
    clevel: int
    shuffle: Shuffle


#: Named trade-offs of write speed against bytes, measured on bf16 Gemma-3-like activations (one core,
#: MB/s of float32; see BENCHMARKS.md "Codec presets"). Only Zarr v3 core codecs (Blosc).
PRESETS: dict[str, CodecSettings] = {
    "fast": CodecSettings("blosc-lz4", 5, "byte"),
    "balanced": CodecSettings("blosc-zstd", 1, "byte"),
    "compact": CodecSettings("blosc-zstd", 3, "byte"),
}

#: One line per preset for ``--help`` and messages.
PRESET_HELP: dict[str, str] = {
    "fast": "Blosc lz4 + byte shuffle: 4-5x compact's encode and ~4x its decode speed per core, "
    "~20 % more bytes (~1.85 per bf16 value)",
    "balanced": "Blosc zstd 1 + byte shuffle: ~2x compact's encode speed, ~5 % more bytes",
    "compact": "Blosc zstd 3 + byte shuffle: the fewest bytes (~1.51 per bf16 value), the slowest encode",
}

#: The preset new stores use: see docs/store-schema.md ("Values and codecs") for why.
DEFAULT_COMPRESSOR: Compressor = "fast"

_CODEC_DEFAULTS: dict[str, CodecSettings] = {
    "blosc-zstd": CodecSettings("blosc-zstd", 3, "byte"),
    "blosc-lz4": CodecSettings("blosc-lz4", 3, "byte"),
    "zstd": CodecSettings("zstd", 3, "none"),
    "none": CodecSettings("none", 0, "none"),
}


@dataclass(frozen=True)
class StoreConfig:
    """How activations are laid out and compressed on disk."""

    samples_per_shard: int = 16
    """Samples grouped in one shard file (one sample per chunk inside it). Sets the writers' unit of
    work and memory: a shard block of S samples for all 34 layers of Gemma-3-4B is S x ~97 MB."""

    compressor: Compressor = DEFAULT_COMPRESSOR
    """A preset (``fast``, ``balanced``, ``compact``: see :data:`PRESETS`) or a codec named directly
    (``blosc-zstd``, ``blosc-lz4``, ``zstd``, ``none``) with ``clevel`` and ``shuffle``."""

    clevel: int | None = None
    """Compression level (1-9 for Blosc, 1-22 for Zstd); None keeps the preset's or codec's level."""

    shuffle: Shuffle | None = None
    """Blosc pre-filter (``byte``, ``bit``, ``none``); None keeps the preset's or codec's (byte)."""

    precision: Precision = "bf16"
    """"bf16": store float32 values rounded to bfloat16 (what Gemma computes on GPUs; exact when the
    model runs in bf16). "fp32": keep full float32. Never float16: Gemma 3 overflows it."""

    def __post_init__(self) -> None:
        if not isinstance(self.samples_per_shard, int) or self.samples_per_shard < 1:
            raise ConfigError(f"samples_per_shard must be a positive integer, got {self.samples_per_shard!r}")
        if self.compressor not in get_args(Compressor):
            raise ConfigError(
                f"unknown compressor {self.compressor!r}: use a preset {list(PRESETS)} (trade-offs in "
                f"`sae-store init --help`) or a codec {list(get_args(Codec))}"
            )
        if self.shuffle is not None:
            check_choice("shuffle", self.shuffle, get_args(Shuffle))
        check_choice("precision", self.precision, get_args(Precision))
        codec = self.settings.codec
        if self.shuffle not in (None, "none") and not codec.startswith("blosc"):
            raise ConfigError(
                f"shuffle {self.shuffle!r} applies only to Blosc codecs, not to {self.compressor!r}; "
                "leave shuffle unset"
            )
        top = 22 if codec == "zstd" else 9
        if self.clevel is not None and (not isinstance(self.clevel, int) or not 0 <= self.clevel <= top):
            raise ConfigError(
                f"clevel must be an integer in 0..{top} for {self.compressor!r}, got {self.clevel!r}"
            )

    @property
    def settings(self) -> CodecSettings:
        """The codec, level and shuffle this configuration stands for."""
        base = PRESETS.get(self.compressor) or _CODEC_DEFAULTS[self.compressor]
        return base._replace(
            clevel=base.clevel if self.clevel is None else self.clevel,
            shuffle=base.shuffle if self.shuffle is None else self.shuffle,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreConfig:
        check_known_keys(data, cls, "store config")
        return cls(**data)
