"""SAE training streamed from the store, SAELens-compatible SAE folders, and feature encoding.

- :mod:`~sae_store.train.sae`: the SAE modules (TopK, BatchTopK, ReLU, JumpReLU, Matryoshka
  BatchTopK), pure torch.
- :mod:`~sae_store.train.buffer` and :mod:`~sae_store.train.data`: the data provider (store ->
  shuffled batches).
- :mod:`~sae_store.train.trainer`: the trainer, which sees only an iterator of batches.
- :mod:`~sae_store.train.metrics`: held-out quality (FVU, L0, dead fraction), for trained and
  pretrained SAEs alike.
- :mod:`~sae_store.train.formats`: saving and loading SAE folders (ours, SAELens, sparsify, Gemma Scope).
- :mod:`~sae_store.train.discovery`: the SAE of each layer in a folder of SAEs (any of those layouts),
  and what each records (config, training metrics, held-out quality).
- :mod:`~sae_store.train.run`: one training run of one layer (``sae-store train``).
- :mod:`~sae_store.train.encode`: the store's ``features`` group (``sae-store encode``).
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.train.config import DataConfig, EncodeConfig, RunConfig, SaeConfig, TrainerConfig
    from sae_store.train.data import StoreDataProvider
    from sae_store.train.discovery import (
        DEAD_METRICS,
        SaeRecord,
        dead_text,
        encoded_saes,
        find_saes,
        sae_records,
    )
    from sae_store.train.encode import encode_features
    from sae_store.train.formats import LoadedSae, load_sae, save_sae
    from sae_store.train.run import TrainResult, train_layer
    from sae_store.train.sae import ForwardOutput, SparseAutoencoder, build_sae
    from sae_store.train.trainer import Trainer

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "config": ("DataConfig", "EncodeConfig", "RunConfig", "SaeConfig", "TrainerConfig"),
        "data": ("StoreDataProvider",),
        "encode": ("encode_features",),
        "formats": ("LoadedSae", "load_sae", "save_sae"),
        "discovery": ("DEAD_METRICS", "SaeRecord", "dead_text", "encoded_saes", "find_saes", "sae_records"),
        "run": ("TrainResult", "train_layer"),
        "sae": ("ForwardOutput", "SparseAutoencoder", "build_sae"),
        "trainer": ("Trainer",),
    },
)
