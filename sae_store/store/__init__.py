"""The activation store: the one place that knows Zarr.

Layout, variables and attributes are documented in ``docs/store-schema.md`` and defined in
:mod:`sae_store.store.schema`.
"""

from sae_store.store.blocks import Block, block_ranges, check_aligned, task_blocks
from sae_store.store.config import StoreConfig
from sae_store.store.core import ActivationStore, open_store
from sae_store.store.create import ModelInfo, create_store
from sae_store.store.schema import SCHEMA_VERSION, TokenRole
from sae_store.store.status import Completion, completion
from sae_store.store.usage import Usage, parse_size, store_usage

__all__ = [
    "SCHEMA_VERSION",
    "ActivationStore",
    "Block",
    "Completion",
    "ModelInfo",
    "StoreConfig",
    "TokenRole",
    "Usage",
    "block_ranges",
    "check_aligned",
    "completion",
    "create_store",
    "open_store",
    "parse_size",
    "store_usage",
    "task_blocks",
]
