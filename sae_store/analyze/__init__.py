"""Analyses of SAE features against gender: statistics that hold up, and pictures.

Layers: pure numpy/scipy/torch functions on arrays (:mod:`~sae_store.analyze.stats`,
:mod:`~sae_store.analyze.resample`, :mod:`~sae_store.analyze.bias`,
:mod:`~sae_store.analyze.crosslingual`, :mod:`~sae_store.analyze.matching`,
:mod:`~sae_store.analyze.probe`, :mod:`~sae_store.analyze.visual`, ...); thin xarray/dask wrappers
over a store (``run_*`` modules, :mod:`~sae_store.analyze.data`); and one step per analysis that
stores and writes its results (:mod:`~sae_store.analyze.pipeline`, used by ``sae-store analyze``).
Results layout: :mod:`~sae_store.analyze.results`. Each analysis is registered once in
:mod:`~sae_store.analyze.registry`; :func:`run_analyses` runs them as ``sae-store analyze`` does.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.analyze.context import run_analyses
    from sae_store.analyze.interpret import firing_tokens, token_label
    from sae_store.analyze.registry import ANALYSES, Analysis, register_analysis
    from sae_store.analyze.results import read_analysis, write_analysis
    from sae_store.analyze.visual import grid_side, image_grid

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "context": ("run_analyses",),
        "interpret": ("firing_tokens", "token_label"),
        "registry": ("ANALYSES", "Analysis", "register_analysis"),
        "results": ("read_analysis", "write_analysis"),
        "visual": ("grid_side", "image_grid"),
    },
)
