"""The activation store: the one place that knows Zarr.

Layout, variables and attributes are documented in ``docs/store-schema.md`` and defined in
:mod:`sae_store.store.schema`.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.store.blocks import Block, block_ranges, check_aligned, task_blocks
    from sae_store.store.config import StoreConfig
    from sae_store.store.core import ActivationStore, open_store
    from sae_store.store.create import ModelInfo, create_store
    from sae_store.store.schema import SCHEMA_VERSION
    from sae_store.store.status import Completion, completion
    from sae_store.store.usage import Usage, store_usage

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "blocks": ("Block", "block_ranges", "check_aligned", "task_blocks"),
        "config": ("StoreConfig",),
        "core": ("ActivationStore", "open_store"),
        "create": ("ModelInfo", "create_store"),
        "schema": ("SCHEMA_VERSION",),
        "status": ("Completion", "completion"),
        "usage": ("Usage", "store_usage"),
    },
)
