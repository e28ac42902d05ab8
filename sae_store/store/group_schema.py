"""The schema of the groups written after extraction: ``features`` (``encode``) and ``generation``
(``caption``). With :mod:`.schema`, the one definition of the store's layout (documented in
``docs/store-schema.md``).
"""

from __future__ import annotations

from zarr.codecs import BloscCodec

from sae_store.store.schema import (
    COMPLETE,
    FEATURE,
    FEATURE_FRAC,
    FEATURE_MAX,
    FEATURE_MEAN,
    GENDER,
    LANGUAGE,
    LAYER,
    SAMPLE,
    SAMPLE_COORDS,
    TOKENS_USED,
    StoreLayout,
    VarSpec,
)


def feature_variables(layout: StoreLayout, d_sae: int) -> dict[str, VarSpec]:
    """The ``features`` group's arrays.

    Each shard block of samples has one file per array holding every layer and language: the
    statistics are shards (layers, languages, samples_per_shard, d_sae) of chunks
    (1, 1, samples_per_shard, d_sae); ``tokens_used`` and ``complete`` one chunk per block.
    Array tasks own whole blocks, so no two of them write one file; a task rewrites a block's
    shard once per layer it encodes (zarr keeps the other layers' chunks encoded as they are).
    """
    dims = (LAYER, LANGUAGE, SAMPLE, FEATURE)
    L, G, B = len(layout.layers), len(layout.languages), layout.samples_per_shard
    # mostly zeros: byte shuffle groups the zero bytes, zstd removes them
    sparse = (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),)
    coords = {"coordinates": " ".join(SAMPLE_COORDS)}

    def stat(long_name: str) -> VarSpec:
        return VarSpec(
            dims,
            "float32",
            (1, 1, B, d_sae),
            shards=(L, G, B, d_sae),
            fill_value=float("nan"),
            attrs={"long_name": long_name, "units": "1", **coords},
            compressors=sparse,
        )

    return {
        FEATURE_MEAN: stat("mean of the latent over the sample's tokens of the chosen roles"),
        FEATURE_MAX: stat("max of the latent over the sample's tokens of the chosen roles"),
        FEATURE_FRAC: stat("fraction of the sample's tokens of the chosen roles where the latent is > 0"),
        TOKENS_USED: VarSpec(
            dims[:3],
            "int32",
            (L, G, B),
            fill_value=-1,
            attrs={"long_name": "finite tokens of the chosen roles encoded (-1: not written)", "units": "1"},
        ),
        COMPLETE: VarSpec(
            dims[:3],
            "bool",
            (L, G, B),
            fill_value=False,
            attrs={"long_name": "features of this sample are on disk"},
        ),
    }


#: Dimension of the generated caption's token ids (``generation`` group).
NEW_TOKEN = "new_token"
#: Root coordinates the ``generation`` group repeats.
GENERATION_COORDS = (LANGUAGE, SAMPLE, GENDER)


def generation_variables(layout: StoreLayout, max_new_tokens: int) -> dict[str, VarSpec]:
    """The ``generation`` group's arrays (``sae-store caption``): like the other per-block arrays, one
    file per shard block of samples holding every language, chunks ``(languages, samples_per_shard)``
    along (language, sample); -1 means "not generated"."""
    G, B = len(layout.languages), layout.samples_per_shard
    per_sample = {"coordinates": GENDER}

    def counts(long_name: str) -> VarSpec:
        return VarSpec(
            (LANGUAGE, SAMPLE), "int32", (G, B), fill_value=-1, attrs={"long_name": long_name, **per_sample}
        )

    return {
        "generated_caption": VarSpec(
            (LANGUAGE, SAMPLE),
            "str",
            (G, B),
            fill_value="",
            attrs={"long_name": "greedy caption", **per_sample},
        ),
        "generated_ids": VarSpec(
            (LANGUAGE, SAMPLE, NEW_TOKEN),
            "int32",
            (G, B, max_new_tokens),
            fill_value=-1,
            attrs={"long_name": "token ids of the caption (-1 after its end)", **per_sample},
        ),
        "n_generated": counts("tokens generated"),
        "male_terms": counts("male terms in the caption"),
        "female_terms": counts("female terms in the caption"),
        COMPLETE: VarSpec(
            (LANGUAGE, SAMPLE),
            "bool",
            (G, B),
            fill_value=False,
            attrs={"long_name": "caption is on disk", **per_sample},
        ),
    }
