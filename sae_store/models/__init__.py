"""Loading vision-language models, their inputs, and the tiny offline Gemma 3.

- :mod:`~sae_store.models.loader`: checks a local model folder, loads model and processor
  (:func:`~sae_store.models.loader.load_model`), and fingerprints it (``model_identity``).
- :mod:`~sae_store.models.adapter`: per-architecture facts and where the decoder layers are
  (Gemma 3 now; other VLMs register an adapter).
- :mod:`~sae_store.models.inputs`: chat-template batches, token roles, left alignment.
- :mod:`~sae_store.models.tiny`: a small random Gemma 3 folder built offline for tests and demos.

Import the submodules directly; this package imports nothing so that it stays cheap to import.
"""
