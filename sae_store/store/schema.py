"""The activation store's schema: the one definition of its dimensions, variables and encodings.

See ``docs/store-schema.md`` for the user-facing description; this module is what the code uses.
Bump :data:`SCHEMA_VERSION` whenever a change would make older code misread a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

#: Version of the on-disk layout written by this code. Stores with another version are refused.
SCHEMA_VERSION = 1

# Dimension names (also the names of their coordinate variables).
LAYER = "layer"
LANGUAGE = "language"
SAMPLE = "sample"
TOKEN = "token"
HIDDEN = "hidden"
FEATURE = "feature"


class TokenRole(IntEnum):
    """What a token position holds; stored in ``token_role`` as int8."""

    PAD = 0
    SPECIAL = 1
    TEXT = 2
    IMAGE = 3


TOKEN_ROLE_NAMES: tuple[str, ...] = tuple(r.name.lower() for r in TokenRole)

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


def root_variables(layout: StoreLayout, compressors: tuple[Any, ...]) -> dict[str, VarSpec]:
    """Specs of every non-coordinate array in the root group.

    Arrays written by extraction workers are chunked so that one chunk never spans two shard
    blocks of samples: a worker owns whole chunks and concurrent workers cannot lose updates.
    """
    S, T, H = layout.samples_per_shard, layout.max_tokens, layout.hidden_size
    roles = {
        "flag_values": [int(r) for r in TokenRole],
        "flag_meanings": " ".join(TOKEN_ROLE_NAMES),
        "long_name": "what each token position holds",
    }
    return {
        ACTIVATIONS: VarSpec(
            (LAYER, LANGUAGE, SAMPLE, TOKEN, HIDDEN),
            "float32",
            chunks=(1, 1, 1, T, H),
            shards=(1, 1, S, T, H),
            fill_value=float("nan"),
            compressors=compressors,
            attrs={
                "long_name": "residual stream after each decoder layer",
                "coordinates": " ".join(SAMPLE_COORDS),
            },
        ),
        INPUT_IDS: VarSpec(
            (LANGUAGE, SAMPLE, TOKEN),
            "int32",
            (1, S, T),
            fill_value=0,
            attrs={"long_name": "token ids, left-aligned (padding last)"},
        ),
        TOKEN_ROLE: VarSpec((LANGUAGE, SAMPLE, TOKEN), "int8", (1, S, T), fill_value=0, attrs=roles),
        N_TOKENS: VarSpec(
            (LANGUAGE, SAMPLE),
            "int32",
            (1, S),
            fill_value=0,
            attrs={"long_name": "real (non-padding) tokens of each sample"},
        ),
        EXTRACT_ERROR: VarSpec(
            (LANGUAGE, SAMPLE),
            "str",
            (1, S),
            fill_value="",
            attrs={"long_name": "why extraction failed for a sample ('' if it did not)"},
        ),
        COMPLETE: VarSpec(
            (LAYER, LANGUAGE, SAMPLE),
            "bool",
            (1, 1, S),
            fill_value=False,
            attrs={"long_name": "activations of this sample are on disk"},
        ),
        MAX_ABS: VarSpec(
            (LAYER, LANGUAGE, SAMPLE),
            "float32",
            (1, 1, S),
            fill_value=float("nan"),
            attrs={"long_name": "largest finite |activation| of the sample"},
        ),
        NONFINITE: VarSpec(
            (LAYER, LANGUAGE, SAMPLE),
            "int32",
            (1, 1, S),
            fill_value=-1,
            attrs={"long_name": "count of NaN/inf values before storage (-1: not written)"},
        ),
        IMAGE: VarSpec(
            (SAMPLE,),
            "str",
            (S,),
            fill_value="",
            attrs={"long_name": "image path relative to the images folder"},
        ),
        GENDER: VarSpec(
            (SAMPLE,),
            "str",
            (S,),
            fill_value="",
            attrs={
                "long_name": "gender label from the reference captions",
                "allowed": "male female ambiguous unknown",
            },
        ),
        CAPTION: VarSpec(
            (SAMPLE, LANGUAGE),
            "str",
            (S, 1),
            fill_value="",
            attrs={"long_name": "reference captions, newline-separated"},
        ),
    }
