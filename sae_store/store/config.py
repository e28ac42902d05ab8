"""Typed configuration of the activation store's on-disk encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from sae_store.configbase import Settings, setting
from sae_store.device import DTYPE_ALIASES

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
class StoreConfig(Settings):
    """How activations are laid out and compressed on disk (``sae-store init``; YAML ``store:``)."""

    samples_per_shard: int = setting(
        16, help="samples per shard file: the unit of work and of writer memory", metavar="N", ge=1
    )
    """Samples grouped in one shard file (one sample per chunk inside it). Sets the writers' unit of
    work and memory: a shard block of S samples for all 34 layers of Gemma-3-4B is S x ~97 MB."""

    compressor: Compressor = setting(
        DEFAULT_COMPRESSOR,
        help="codec preset or codec for activations (fast: the writer keeps up with a GPU). Presets - "
        + "; ".join(f"{name}: {text}" for name, text in PRESET_HELP.items())
        + ". Codecs: blosc-zstd, blosc-lz4, zstd, none (with --clevel, --shuffle)",
        metavar="NAME",
        what=f"a preset {list(PRESETS)} (trade-offs in `sae-store init --help`) or a codec "
        f"{list(get_args(Codec))}",
    )
    """A preset (``fast``, ``balanced``, ``compact``: see :data:`PRESETS`) or a codec named directly
    (``blosc-zstd``, ``blosc-lz4``, ``zstd``, ``none``) with ``clevel`` and ``shuffle``."""

    clevel: int | None = setting(
        None, help="compression level", metavar="N", default_text="the preset's or codec's"
    )
    """Compression level (1-9 for Blosc, 1-22 for Zstd); None keeps the preset's or codec's level."""

    shuffle: Shuffle | None = setting(
        None, help="Blosc pre-filter", default_text="the preset's; byte for a Blosc codec named directly"
    )

    precision: Precision = setting(
        "bf16",
        help="round stored values to bf16 or keep fp32 (bfloat16, float32 also accepted)",
        aliases=DTYPE_ALIASES,
    )
    """"bf16": store float32 values rounded to bfloat16 (what Gemma computes on GPUs; exact when the
    model runs in bf16). "fp32": keep full float32. Never float16: Gemma 3 overflows it."""

    def check(self) -> None:
        codec = self.settings.codec
        if self.shuffle not in (None, "none") and not codec.startswith("blosc"):
            raise self.rule_error(
                f"{{shuffle}} {self.shuffle!r} applies only to Blosc codecs, not to {self.compressor!r}; "
                "leave {shuffle} unset"
            )
        top = 22 if codec == "zstd" else 9
        if self.clevel is not None and not 0 <= self.clevel <= top:
            raise self.rule_error(
                f"{{clevel}} must be an integer in 0..{top} for {self.compressor!r}, got {self.clevel!r}"
            )

    @property
    def settings(self) -> CodecSettings:
        """The codec, level and shuffle this configuration stands for."""
        base = PRESETS.get(self.compressor) or _CODEC_DEFAULTS[self.compressor]
        return base._replace(
            clevel=base.clevel if self.clevel is None else self.clevel,
            shuffle=base.shuffle if self.shuffle is None else self.shuffle,
        )
