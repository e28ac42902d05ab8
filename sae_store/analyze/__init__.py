"""Analyses of SAE features against gender: statistics that hold up, and pictures.

Layers: pure numpy/scipy/torch functions on arrays (:mod:`~sae_store.analyze.stats`,
:mod:`~sae_store.analyze.resample`, :mod:`~sae_store.analyze.bias`,
:mod:`~sae_store.analyze.crosslingual`, :mod:`~sae_store.analyze.matching`,
:mod:`~sae_store.analyze.probe`, :mod:`~sae_store.analyze.visual`, ...); thin xarray/dask wrappers
over a store (``run_*`` modules, :mod:`~sae_store.analyze.data`); and one step per analysis that
stores and writes its results (:mod:`~sae_store.analyze.pipeline`, used by ``sae-store analyze``).
Results layout: :mod:`~sae_store.analyze.results`.
"""
