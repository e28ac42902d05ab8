"""Loading vision-language models, their inputs, and the tiny offline Gemma 3.

- :mod:`~sae_store.models.loader`: checks a local model folder, loads model and processor
  (:func:`~sae_store.models.loader.load_model`), and fingerprints it (``model_identity``).
- :mod:`~sae_store.models.adapter`: per-architecture facts and where the decoder layers are
  (Gemma 3 now; other VLMs register an adapter).
- :mod:`~sae_store.models.inputs`: chat-template batches, token roles, left alignment.
- :mod:`~sae_store.models.tiny`: a small random Gemma 3 folder built offline for tests and demos.
- :mod:`~sae_store.models.config`: how the model runs (device, dtype); :mod:`~sae_store.models.tokens`:
  token ids as text.

Names are imported on first use, so importing this package stays cheap.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.models.config import ModelRunConfig
    from sae_store.models.inputs import special_token_ids, token_roles
    from sae_store.models.loader import LoadedModel, load_model, load_processor, model_identity
    from sae_store.models.tiny import build_tiny_gemma3
    from sae_store.models.tokens import TokenDecoder, token_decoder

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "config": ("ModelRunConfig",),
        "inputs": ("special_token_ids", "token_roles"),
        "loader": ("LoadedModel", "load_model", "load_processor", "model_identity"),
        "tiny": ("build_tiny_gemma3",),
        "tokens": ("TokenDecoder", "token_decoder"),
    },
)
