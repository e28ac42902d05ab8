"""The built-in SAE architectures, one module each (registered in :mod:`sae_store.train.architectures`)."""
