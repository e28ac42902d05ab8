"""sae-store: a Zarr/xarray activation store, SAE training and bias analyses for vision-language models.

Open a store with :func:`open_store` (or plainly with ``xr.open_zarr(path)``); see
``docs/store-schema.md`` for its layout.
"""

from sae_store._version import __version__
from sae_store.errors import SaeStoreError
from sae_store.store import ActivationStore, StoreConfig, create_store, open_store

__all__ = ["ActivationStore", "SaeStoreError", "StoreConfig", "__version__", "create_store", "open_store"]
