"""The schema of the groups written after extraction: ``features`` (``encode``), ``generation``
(``caption``) and ``evaluation/<set>`` (``evaluate``). With :mod:`.schema`, the one definition of the
store's layout (documented in ``docs/store-schema.md``).
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
    ROLE,
    ROLE_FRAC,
    ROLE_TOKENS,
    SAMPLE,
    SAMPLE_COORDS,
    TOKENS_USED,
    StoreLayout,
    VarSpec,
)

#: Codec of the per-sample feature statistics: mostly zeros, which byte shuffle groups and zstd removes.
_SPARSE = (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),)


def feature_variables(layout: StoreLayout, d_sae: int) -> dict[str, VarSpec]:
    """The ``features`` group's arrays.

    Each shard block of samples has one file per array holding every layer and language: the
    statistics are shards (layers, languages, samples_per_shard, d_sae) of chunks
    (1, 1, samples_per_shard, d_sae); ``tokens_used`` and ``complete`` one chunk per block.
    Array tasks own whole blocks, so no two of them write one file; a task rewrites a block's
    shard once per layer it encodes (zarr keeps the other layers' chunks encoded as they are).
    ``encode`` adds :func:`role_variables`; groups encoded before those existed have these alone.
    """
    dims = (LAYER, LANGUAGE, SAMPLE, FEATURE)
    L, G, B = len(layout.layers), len(layout.languages), layout.samples_per_shard
    coords = {"coordinates": " ".join(SAMPLE_COORDS)}

    def stat(long_name: str) -> VarSpec:
        return VarSpec(
            dims,
            "float32",
            (1, 1, B, d_sae),
            shards=(L, G, B, d_sae),
            fill_value=float("nan"),
            attrs={"long_name": long_name, "units": "1", **coords},
            compressors=_SPARSE,
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


def role_variables(layout: StoreLayout, d_sae: int, n_roles: int) -> dict[str, VarSpec]:
    """The ``features`` group's per-role arrays (``role`` runs over the ``n_roles`` roles ``encode``
    kept), chunked like :func:`feature_variables`' statistics: one file per shard block of samples
    holding every layer, language and role. Groups encoded before they existed lack them."""
    L, G, B = len(layout.layers), len(layout.languages), layout.samples_per_shard
    return {
        ROLE_FRAC: VarSpec(
            (LAYER, LANGUAGE, SAMPLE, ROLE, FEATURE),
            "float32",
            (1, 1, B, n_roles, d_sae),
            shards=(L, G, B, n_roles, d_sae),
            fill_value=float("nan"),
            attrs={
                "long_name": "fraction of the sample's tokens of the role where the latent is > 0",
                "units": "1",
                "coordinates": " ".join(SAMPLE_COORDS),
            },
            compressors=_SPARSE,
        ),
        ROLE_TOKENS: VarSpec(
            (LAYER, LANGUAGE, SAMPLE, ROLE),
            "int32",
            (L, G, B, n_roles),
            fill_value=-1,
            attrs={"long_name": "finite tokens of the role encoded (-1: not written)", "units": "1"},
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


#: The ``evaluation/<set>`` group's own dimensions (their coordinate values are the metrics and splits
#: ``sae-store evaluate`` measures, named in :mod:`sae_store.evaluate.results`).
ROLE_SPLIT, METRIC, DENSITY_BIN = ROLE, "metric", "density_bin"
SPLICE, BEHAVIOUR_METRIC = "splice", "behaviour_metric"
PROBE, PROBE_INPUT, PROBE_STAT = "probe", "probe_input", "probe_stat"
#: Root coordinates an ``evaluation/<set>`` group repeats.
EVALUATION_COORDS = (LAYER, LANGUAGE)


def evaluation_variables(layout: StoreLayout, sizes: dict[str, int]) -> dict[str, VarSpec]:
    """The arrays of one SAE set's ``evaluation/<set>`` group, ``sizes`` giving its own dimensions.

    Every array is chunked one layer at a time, so an array task evaluating one layer owns its files
    (one per array and layer) and concurrent tasks never rewrite each other's.
    """
    G = len(layout.languages)

    def spec(dims: tuple[str, ...], dtype: str, long_name: str, fill: object = float("nan")) -> VarSpec:
        chunks = tuple(1 if d == LAYER else G if d == LANGUAGE else sizes[d] for d in dims)
        units = {"units": "1"} if dtype != "str" and dtype != "bool" else {}
        return VarSpec(dims, dtype, chunks, fill_value=fill, attrs={"long_name": long_name, **units})

    return {
        "reconstruction": spec(
            (LAYER, LANGUAGE, ROLE_SPLIT, METRIC), "float64", "reconstruction and sparsity per token split"
        ),
        "reconstruction_total": spec(
            (LAYER, ROLE_SPLIT, METRIC), "float64", "reconstruction and sparsity over every language"
        ),
        "density_histogram": spec(
            (LAYER, LANGUAGE, ROLE_SPLIT, DENSITY_BIN),
            "int32",
            "latents per log10 firing-density bin (dead latents not counted)",
            fill=-1,
        ),
        "behaviour": spec(
            (LAYER, LANGUAGE, SPLICE, BEHAVIOUR_METRIC), "float64", "model behaviour with the SAE spliced in"
        ),
        "behaviour_total": spec(
            (LAYER, SPLICE, BEHAVIOUR_METRIC),
            "float64",
            "model behaviour with the SAE spliced in, every language",
        ),
        "probing": spec((LAYER, PROBE, PROBE_INPUT, PROBE_STAT), "float64", "cross-validated probe accuracy"),
        "sae_record": spec((LAYER,), "str", "the layer's SAE and what was measured (JSON)", fill=""),
        COMPLETE: spec((LAYER,), "bool", "the layer's evaluation is on disk", fill=False),
    }
