"""``sae-store explore``: a feature browser served straight from the store (Panel on a Bokeh server).

The store is read lazily through xarray: a page reads only what it shows. See :mod:`.app` for
routing and serving, :mod:`.data` for what is read, and one module per page.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.explore.app import Explorer, PortInUseError, build_page, check_port, serve
    from sae_store.explore.data import ExploreData, FeatureNotFoundError, SampleNotFoundError

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "app": ("Explorer", "PortInUseError", "build_page", "check_port", "serve"),
        "data": ("ExploreData", "FeatureNotFoundError", "SampleNotFoundError"),
    },
)
