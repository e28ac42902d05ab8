"""Causal interventions: edit SAE features inside the running model and measure what changes.

* :mod:`~sae_store.intervene.hooks`: error-preserving edits (ablate, amplify, neutralise) applied by a
  forward hook on one decoder layer, during forward passes and generation;
* :mod:`~sae_store.intervene.captions`: greedy captions, optionally with an edit;
* :mod:`~sae_store.intervene.metrics` and :mod:`~sae_store.intervene.stats`: term log-probabilities,
  splice quality, paired statistics, the male-female differential and random controls;
* :mod:`~sae_store.intervene.experiment`: one experiment at one layer;
* :mod:`~sae_store.intervene.generation`, :mod:`~sae_store.intervene.results` and
  :mod:`~sae_store.intervene.run`: the store's ``generation`` and ``analysis/intervene`` groups and JSON.
"""
