"""The activation store's schema: the one definition of its dimensions, variables and encodings.

See ``docs/store-schema.md`` for the user-facing description; this module is what the code uses.
Bump :data:`SCHEMA_VERSION` whenever a change would make older code misread a store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from sae_store.roles import TOKEN_ROLE_NAMES

#: Version of the on-disk layout written by this code. Stores with another version are refused
#: for writing; older versions can still be read and are upgraded by ``sae-store migrate``.
SCHEMA_VERSION = 3

#: Versions this code reads (the older ones only until they are migrated).
READABLE_VERSIONS = (1, 2, 3)

#: Value of the root ``Conventions`` attribute (CF metadata conventions).
CONVENTIONS = "CF-1.10"

#: Root attributes holding nested structures: stored as JSON text so that netCDF writers accept
#: them (``ds.isel(...).to_netcdf(...)``); :func:`decode_attrs` turns them back into dicts.
JSON_ATTRS = ("sae_store", "model", "prompts", "tokens_per_language", "image_processor", "config")

#: Samples per chunk of the per-sample label arrays (``sample``, ``image``, ``gender``, ...), in
#: shard blocks: written only by ``init`` and ``append`` (never by array tasks), so they may span blocks.
LABEL_CHUNK_BLOCKS = 64

# Dimension names (also the names of their coordinate variables).
LAYER = "layer"
LANGUAGE = "language"
SAMPLE = "sample"
TOKEN = "token"
HIDDEN = "hidden"
FEATURE = "feature"


class ExtractStatus(IntEnum):
    """Extraction outcome of a (language, sample); stored in ``extract_status`` as int8.

    ``OK`` is also the value of a sample not extracted yet: ``complete`` says whether it was.
    """

    OK = 0
    FAILED = 1


EXTRACT_STATUS_NAMES: tuple[str, ...] = tuple(s.name.lower() for s in ExtractStatus)

#: Gender labels in the order of their integer codes (``gender_code``).
GENDER_NAMES: tuple[str, ...] = ("male", "female", "ambiguous", "unknown")

#: ``flag_meanings`` of ``token_role``: the role names with ``_token`` (a bare ``image`` would be
#: the name of the ``image`` coordinate too, and cf_xarray's ``.cf.flags`` names a variable per meaning).
TOKEN_ROLE_MEANINGS: tuple[str, ...] = tuple(f"{name}_token" for name in TOKEN_ROLE_NAMES)

# Names of the variables in the root group.
ACTIVATIONS = "activations"
INPUT_IDS = "input_ids"
TOKEN_ROLE = "token_role"
N_TOKENS = "n_tokens"
EXTRACT_ERROR = "extract_error"
COMPLETE = "complete"
MAX_ABS = "max_abs"
NONFINITE = "nonfinite"
IMAGE = "image"
GENDER = "gender"
CAPTION = "caption"
GENDER_CODE = "gender_code"
LANGUAGE_CODE = "language_code"
EXTRACT_STATUS = "extract_status"

#: Arrays that hold only the fill value unless a sample failed: zarr writes no file for such a chunk.
SPARSE_VARIABLES = (EXTRACT_ERROR, EXTRACT_STATUS)
#: Every array of the root group of a schema version 2 store: coordinates, then variables.
ROOT_ARRAYS = (
    LAYER, LANGUAGE, SAMPLE, TOKEN, HIDDEN, ACTIVATIONS, INPUT_IDS, TOKEN_ROLE, N_TOKENS, EXTRACT_ERROR,
    EXTRACT_STATUS, COMPLETE, MAX_ABS, NONFINITE, IMAGE, GENDER, GENDER_CODE, CAPTION, LANGUAGE_CODE,
)  # fmt: skip

# Groups written after extraction (read and written through sae_store.store.results).
GENERATION = "generation"
"""The model's own captions (``sae-store caption``)."""
ANALYSIS = "analysis"
"""One sub-group per analysis (``sae-store analyze``)."""
INTERVENE = f"{ANALYSIS}/intervene"
"""``<key>/layer_<L>`` per intervention experiment (``sae-store intervene``)."""
INTERVENE_LAYER_PREFIX = "layer_"
LOGIT_LENS = "logit_lens"
"""``analysis/logit_lens``: tokens each feature's decoder direction promotes and suppresses."""
EXPLANATIONS = "explanations"
"""Explanations of features and their detection and fuzzing scores (``sae-store explain``)."""
EVALUATION = "evaluation"
"""``<set>`` per SAE set evaluated (``sae-store evaluate``)."""

# The ``features`` group (written by ``sae-store encode``).
FEATURES = "features"
FEATURE_MEAN = "feature_mean"
FEATURE_MAX = "feature_max"
FEATURE_FRAC = "feature_frac"
TOKENS_USED = "tokens_used"
#: Per encoded token role (``role`` dimension, the roles ``encode`` kept): the fraction of the role's
#: tokens where each feature is active, and the role's tokens encoded. Groups encoded before lack them.
ROLE_FRAC = "role_frac"
ROLE_TOKENS = "role_tokens"
ROLE = "role"

#: Suffix of the integer-code array beside a categorical string array (``gender`` -> ``gender_code``).
CODE_SUFFIX = "_code"

#: String arrays whose strings are the data (ids, paths, free text): stored as text only. Every other
#: string array of the store, in any group, is categorical and has integer codes with CF
#: ``flag_values``/``flag_meanings`` beside it (:func:`category_codes`), so that Zarr readers without
#: a string type (TensorStore, zarrs) read every label.
TEXT_VARIABLES = frozenset(
    {
        "sample",
        "image",
        "caption",
        "extract_error",
        "generated_caption",
        "edited_caption",
        "description",
        "interpretation",
        "top_sample",
        "sae_record",
        "term_text",
        "explanation",
        "status_reason",
        "explain_sample",
        "score_sample",
    }
)

#: Per-sample metadata variables shown as coordinates by ``xr.open_zarr``.
SAMPLE_COORDS = (IMAGE, GENDER)

#: Key of the root attribute holding the toolkit's own bookkeeping (schema version and the like).
ATTR_KEY = "sae_store"


@dataclass(frozen=True)
class VarSpec:
    """One array of the store: its dimensions, dtype, chunking and attributes."""

    dims: tuple[str, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None = None
    fill_value: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)
    compressors: tuple[Any, ...] | None = None
    """Bytes-to-bytes codecs; None keeps zarr's default (Zstd)."""


@dataclass(frozen=True)
class StoreLayout:
    """The sizes that fix every array's shape; derived from the store's attributes."""

    layers: tuple[int, ...]
    languages: tuple[str, ...]
    n_samples: int
    max_tokens: int
    hidden_size: int
    samples_per_shard: int

    def shape(self, dims: tuple[str, ...], extra: dict[str, int] | None = None) -> tuple[int, ...]:
        sizes = {
            LAYER: len(self.layers),
            LANGUAGE: len(self.languages),
            SAMPLE: self.n_samples,
            TOKEN: self.max_tokens,
            HIDDEN: self.hidden_size,
            **(extra or {}),
        }
        return tuple(sizes[d] for d in dims)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_samples // self.samples_per_shard)

    @property
    def label_chunk(self) -> int:
        """Samples per chunk of the label arrays (a whole number of shard blocks)."""
        return self.samples_per_shard * LABEL_CHUNK_BLOCKS


def flag_attrs(names: tuple[str, ...] | list[str], long_name: str) -> dict[str, Any]:
    """CF attributes of a categorical variable whose integer codes are 0..len(names)-1."""
    return {
        "flag_values": list(range(len(names))),
        "flag_meanings": " ".join(names),
        "long_name": long_name,
    }


def category_codes(
    values: Any, meanings: tuple[str, ...] | list[str] | None = None
) -> tuple[Any, list[str]] | None:
    """Integer codes of the labels ``values`` (``""`` is -1) and the meanings they index.

    ``meanings`` fixes the order of known labels (the root's genders or languages); labels not in
    it follow, sorted. None when the values are not labels: a value with a blank in it cannot be a
    CF flag meaning, so such an array is text.
    """
    import numpy as np

    flat = [str(v) for v in np.asarray(values, dtype=object).ravel()]
    found = sorted({v for v in flat if v})
    if any(len(v.split()) != 1 or v.strip() != v for v in found):
        return None
    order = list(meanings or ())
    order += [v for v in found if v not in order]
    index = {v: i for i, v in enumerate(order)}
    dtype = np.int8 if len(order) < 2**7 else np.int16 if len(order) < 2**15 else np.int32
    codes = np.array([index[v] if v else -1 for v in flat], dtype=dtype).reshape(np.shape(values))
    return codes, order


def coordinate_attrs(dim: str) -> dict[str, Any]:
    """Attributes of a dimension coordinate."""
    described = {
        LAYER: ("decoder layer index", "1"),
        LANGUAGE: ("prompt language key", None),
        SAMPLE: ("sample id", None),
        TOKEN: ("token position (left-aligned, padding last)", "1"),
        HIDDEN: ("residual-stream channel", "1"),
        FEATURE: ("SAE latent index", "1"),
    }
    long_name, units = described[dim]
    return {"long_name": long_name, **({"units": units} if units else {})}


def encode_attrs(attrs: dict[str, Any], keys: tuple[str, ...] | None = JSON_ATTRS) -> dict[str, Any]:
    """Attributes as stored: nested values as JSON text (netCDF writers accept text).

    ``keys`` are the attributes stored so (the root's :data:`JSON_ATTRS`); None: every dict or list.
    """
    return {
        k: json.dumps(v, ensure_ascii=False)
        if (k in keys if keys is not None else isinstance(v, dict | list | tuple)) and not isinstance(v, str)
        else v
        for k, v in attrs.items()
    }


def decode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes with JSON text turned back into dicts and lists (version 1's dicts are kept as they are)."""
    return {k: _decoded(v) for k, v in attrs.items()}


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:  # text that only starts like JSON
            return value
    return value


def root_variables(layout: StoreLayout, compressors: tuple[Any, ...]) -> dict[str, VarSpec]:
    """Specs of every non-coordinate array in the root group.

    Arrays written by extraction workers have one file per shard block of samples holding every
    layer and language of the block: a task owns whole blocks (for all layers and languages), so
    no two tasks ever write one file, and a study has about one such file per block and array.
    Label arrays (written by ``init`` and ``append`` only) have chunks of :attr:`StoreLayout.label_chunk`.
    """
    S, T, H = layout.samples_per_shard, layout.max_tokens, layout.hidden_size
    L, G, C = len(layout.layers), len(layout.languages), layout.label_chunk
    coords = {"coordinates": " ".join(SAMPLE_COORDS)}
    return {
        ACTIVATIONS: VarSpec(
            (LAYER, LANGUAGE, SAMPLE, TOKEN, HIDDEN),
            "float32",
            chunks=(1, 1, 1, T, H),
            shards=(1, 1, S, T, H),
            fill_value=float("nan"),
            compressors=compressors,
            attrs={"long_name": "residual stream after each decoder layer", "units": "1", **coords},
        ),
        INPUT_IDS: VarSpec(
            (LANGUAGE, SAMPLE, TOKEN),
            "int32",
            (G, S, T),
            fill_value=0,
            attrs={"long_name": "token ids, left-aligned (padding last)", "units": "1"},
        ),
        TOKEN_ROLE: VarSpec(
            (LANGUAGE, SAMPLE, TOKEN),
            "int8",
            (G, S, T),
            fill_value=0,
            attrs=flag_attrs(TOKEN_ROLE_MEANINGS, "what each token position holds"),
        ),
        N_TOKENS: VarSpec(
            (LANGUAGE, SAMPLE),
            "int32",
            (G, S),
            fill_value=0,
            attrs={"long_name": "real (non-padding) tokens of each sample", "units": "1"},
        ),
        EXTRACT_ERROR: VarSpec(
            (LANGUAGE, SAMPLE),
            "str",
            (G, S),
            fill_value="",
            attrs={"long_name": "why extraction failed for a sample ('' if it did not)"},
        ),
        EXTRACT_STATUS: VarSpec(
            (LANGUAGE, SAMPLE),
            "int8",
            (G, S),
            fill_value=0,
            attrs=flag_attrs(EXTRACT_STATUS_NAMES, "extraction outcome of the sample (see complete)"),
        ),
        COMPLETE: VarSpec(
            (LAYER, LANGUAGE, SAMPLE),
            "bool",
            (L, G, S),
            fill_value=False,
            attrs={"long_name": "activations of this sample are on disk"},
        ),
        MAX_ABS: VarSpec(
            (LAYER, LANGUAGE, SAMPLE),
            "float32",
            (L, G, S),
            fill_value=float("nan"),
            attrs={"long_name": "largest finite |activation| of the sample", "units": "1"},
        ),
        NONFINITE: VarSpec(
            (LAYER, LANGUAGE, SAMPLE),
            "int32",
            (L, G, S),
            fill_value=-1,
            attrs={"long_name": "count of NaN/inf values before storage (-1: not written)", "units": "1"},
        ),
        IMAGE: VarSpec(
            (SAMPLE,),
            "str",
            (C,),
            fill_value="",
            attrs={"long_name": "image path relative to the images folder"},
        ),
        GENDER: VarSpec(
            (SAMPLE,),
            "str",
            (C,),
            fill_value="",
            attrs={
                "long_name": "gender label from the reference captions",
                "allowed": " ".join(GENDER_NAMES),
            },
        ),
        GENDER_CODE: VarSpec(
            (SAMPLE,),
            "int8",
            (C,),
            fill_value=-1,
            attrs=flag_attrs(GENDER_NAMES, "gender label from the reference captions (code)"),
        ),
        CAPTION: VarSpec(
            (SAMPLE, LANGUAGE),
            "str",
            (C, G),
            fill_value="",
            attrs={"long_name": "reference captions, newline-separated"},
        ),
    }


def language_code_spec(languages: tuple[str, ...] | list[str]) -> VarSpec:
    """``language_code``: the integer code of each language, its key in ``flag_meanings``."""
    return VarSpec(
        (LANGUAGE,),
        "int8",
        (len(languages),),
        fill_value=-1,
        attrs=flag_attrs(list(languages), "prompt language (code)"),
    )


def coordinate_spec(dim: str, size: int, layout: StoreLayout) -> VarSpec:
    """A dimension coordinate: one chunk, except ``sample`` (chunked like the label arrays)."""
    dtype = "str" if dim in (LANGUAGE, SAMPLE) else "int32"
    chunks = (layout.label_chunk,) if dim == SAMPLE else (size,)
    return VarSpec((dim,), dtype, chunks, attrs=coordinate_attrs(dim))
