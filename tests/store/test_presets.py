"""Codec presets: what each resolves to, what the store records, and one clear error per bad option."""

from __future__ import annotations

import pytest

from sae_store.errors import ConfigError
from sae_store.store import StoreConfig
from sae_store.store import schema as S
from sae_store.store.config import DEFAULT_COMPRESSOR, PRESETS, CodecSettings


def test_presets_resolve_to_core_blosc_codecs():
    assert StoreConfig(compressor="fast").settings == CodecSettings("blosc-lz4", 5, "byte")
    assert StoreConfig(compressor="balanced").settings == CodecSettings("blosc-zstd", 1, "byte")
    assert StoreConfig(compressor="compact").settings == CodecSettings("blosc-zstd", 3, "byte")
    assert StoreConfig().settings == PRESETS[DEFAULT_COMPRESSOR]
    # a codec named directly keeps its former defaults; options override a preset's
    assert StoreConfig(compressor="blosc-zstd").settings == CodecSettings("blosc-zstd", 3, "byte")
    assert StoreConfig(compressor="fast", clevel=1).settings == CodecSettings("blosc-lz4", 1, "byte")
    assert StoreConfig(compressor="fast", shuffle="bit").settings == CodecSettings("blosc-lz4", 5, "bit")


@pytest.mark.parametrize(
    ("preset", "cname", "shuffle"), [("fast", "lz4", "shuffle"), ("compact", "zstd", "shuffle")]
)
def test_preset_is_applied_to_the_activations(make_store, preset, cname, shuffle):
    store = make_store(4, config=StoreConfig(samples_per_shard=4, compressor=preset))
    codec, checksum = store.array(S.ACTIVATIONS).compressors
    assert type(checksum).__name__ == "Crc32cCodec"
    assert (type(codec).__name__, codec.cname.value, codec.shuffle.value) == ("BloscCodec", cname, shuffle)
    assert store.config()["store"]["compressor"] == preset


def test_bad_codec_options_give_one_clear_error_each():
    with pytest.raises(
        ConfigError, match=r"compressor must be a preset \['fast', 'balanced', 'compact'\] .* got 'turbo'"
    ):
        StoreConfig(compressor="turbo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"clevel must be an integer in 0..9 for 'fast', got 12"):
        StoreConfig(compressor="fast", clevel=12)
    with pytest.raises(ConfigError, match=r"clevel must be an integer in 0..22 for 'zstd', got 23"):
        StoreConfig(compressor="zstd", clevel=23)
    with pytest.raises(ConfigError, match=r"shuffle 'bit' applies only to Blosc codecs, not to 'zstd'"):
        StoreConfig(compressor="zstd", shuffle="bit")
    with pytest.raises(ConfigError, match=r"shuffle must be one of \['byte', 'bit', 'none'\], got 'word'"):
        StoreConfig(shuffle="word")  # type: ignore[arg-type]
