"""Extraction: fill an activation store with a vision-language model's residual streams.

``init_store`` creates the store from a samples table and a model folder (no weights loaded);
``run_extraction`` (or ``extract_activations`` with a loaded model) fills this task's share of it,
resumably and safely beside other array tasks. ``sae_store.store.append`` adds samples later.
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.extract.config import DEFAULT_PROMPTS, ExtractConfig
    from sae_store.extract.init import init_store
    from sae_store.extract.model_info import describe_model
    from sae_store.extract.run import ExtractSummary, extract_activations, plan, run_extraction
    from sae_store.extract.writer import Float16OverflowWarning, NonFiniteError

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "config": ("DEFAULT_PROMPTS", "ExtractConfig"),
        "init": ("init_store",),
        "model_info": ("describe_model",),
        "run": ("ExtractSummary", "extract_activations", "plan", "run_extraction"),
        "writer": ("Float16OverflowWarning", "NonFiniteError"),
    },
)
