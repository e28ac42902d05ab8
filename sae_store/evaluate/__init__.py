"""Which SAE to trust: SAE sets compared on the store's own tokens, split by token role and language.

- :mod:`~sae_store.evaluate.sets`: the SAE sets (``--saes [NAME=]DIR``, any layout ``encode`` reads);
- :mod:`~sae_store.evaluate.tokens` and :mod:`~sae_store.evaluate.stored`: reconstruction and sparsity
  on the stored tokens (SAEBench's core metrics, the explained variance by the correct formula and the
  legacy one) per token role and language;
- :mod:`~sae_store.evaluate.behaviour`: CE loss recovered and KL score with the SAE spliced into the
  running model, teacher-forcing the reference captions;
- :mod:`~sae_store.evaluate.probing`: sparse probes of gender and language from the latents, beside
  probes on the raw activations;
- :mod:`~sae_store.evaluate.results` and :mod:`~sae_store.evaluate.compare`: the store's
  ``evaluation/<set>`` groups, SAEBench's JSON, and the best set per layer;
- :mod:`~sae_store.evaluate.run`: ``sae-store evaluate``.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.evaluate.compare import best_per_layer, comparison_table
    from sae_store.evaluate.config import EvaluateConfig
    from sae_store.evaluate.results import read_evaluations
    from sae_store.evaluate.run import EvaluateOutcome, evaluate_store

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "compare": ("best_per_layer", "comparison_table"),
        "config": ("EvaluateConfig",),
        "results": ("read_evaluations",),
        "run": ("EvaluateOutcome", "evaluate_store"),
    },
)
