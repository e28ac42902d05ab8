"""The SAEs a page needs, loaded on demand and few at a time.

A full-width SAE (d_in 2560, d_sae 20,480) is ~420 MB of float32 weights, so the explorer keeps
only the most recently used ones (:data:`MAX_LOADED`) and drops the rest: memory stays bounded
however many layers are browsed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from sae_store.train import SparseAutoencoder, load_sae

#: SAEs held in memory at once (least recently used dropped first).
MAX_LOADED = 2


class Neighbours(NamedTuple):
    """Features whose decoder directions are closest to one feature's (most similar first)."""

    features: np.ndarray
    cosine: np.ndarray


class _Loaded(NamedTuple):
    sae: SparseAutoencoder
    dec_norms: np.ndarray


class SaeCache:
    """The SAE folder of each layer (any layout ``find_saes`` reads), loaded when first used."""

    def __init__(self, folders: Mapping[int, Path], max_loaded: int = MAX_LOADED) -> None:
        self.folders = dict(folders)
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[int, _Loaded] = OrderedDict()
        self._lock = threading.Lock()  # pages are built on the server's thread, test-box runs on others

    def has(self, layer: int) -> bool:
        """Whether there is an SAE for ``layer``."""
        return layer in self.folders

    def _get(self, layer: int) -> _Loaded:
        with self._lock:
            if layer in self._loaded:
                self._loaded.move_to_end(layer)
                return self._loaded[layer]
            sae = load_sae(self.folders[layer]).sae.eval()
            norms = sae.W_dec.detach().norm(dim=1).numpy().astype(np.float32)
            loaded = self._loaded[layer] = _Loaded(sae, norms)
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return loaded

    @torch.inference_mode()
    def feature_at_tokens(self, layer: int, x_TD: np.ndarray, feature: int) -> np.ndarray:
        """(T,) activation of ``feature`` at each token of ``x_TD`` (T, d_in), through the full encoder
        (TopK-style SAEs gate each feature on all the others, so one column cannot be computed alone)."""
        sae = self._get(layer).sae
        return sae.encode(torch.from_numpy(x_TD))[:, feature].numpy().astype(np.float32)

    @torch.inference_mode()
    def neighbours(self, layer: int, feature: int, k: int = 8) -> Neighbours:
        """The ``k`` features of the same SAE with the highest decoder cosine to ``feature``."""
        loaded = self._get(layer)
        W_dec = loaded.sae.W_dec.detach()
        cos = (W_dec @ W_dec[feature]).numpy() / np.maximum(
            loaded.dec_norms * loaded.dec_norms[feature], 1e-12
        )
        cos[feature] = -np.inf
        order = np.argsort(-cos, kind="stable")[:k]
        return Neighbours(order, cos[order])
