"""What a feature is, in words: explanations of SAE features by a language model, scored.

* :mod:`~sae_store.autointerp.config`: the ``explain`` settings;
* :mod:`~sae_store.autointerp.examples`: examples drawn as delphi draws them (top activations,
  activation quantiles, random firing examples, non-firing examples), per language;
* :mod:`~sae_store.autointerp.prompts`: explanation, detection and fuzzing prompts and their replies;
* :mod:`~sae_store.autointerp.explainers`: one small interface over a local transformers model
  folder and any OpenAI-compatible chat endpoint, with concurrency, retries, a timeout and a cache;
* :mod:`~sae_store.autointerp.scoring`: detection and fuzzing (balanced accuracy, AUC);
* :mod:`~sae_store.autointerp.run` and :mod:`~sae_store.autointerp.results`: ``sae-store explain``,
  the store's ``explanations`` group and the export to delphi's layout;
* :mod:`~sae_store.autointerp.loopback`: a rule-based OpenAI-compatible endpoint on 127.0.0.1 (the
  demo's and the tests' HTTP explainer).
"""
