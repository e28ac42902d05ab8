"""sae-store: a Zarr/xarray activation store, SAE training and bias analyses for vision-language models.

Open a store with :func:`open_store` (or plainly with ``xr.open_zarr(path)``); see
``docs/store-schema.md`` for its layout. Names are imported on first use, so importing a config
module does not load zarr, xarray or torch.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports
from sae_store._version import __version__
from sae_store.errors import SaeStoreError

if TYPE_CHECKING:
    from sae_store.store import ActivationStore, StoreConfig, create_store, open_store

__getattr__, __dir__, _names = lazy_exports(
    __name__, {"store": ("ActivationStore", "StoreConfig", "create_store", "open_store")}
)
__all__ = [*_names, "SaeStoreError", "__version__"]
