"""Extraction: fill an activation store with a vision-language model's residual streams.

``init_store`` creates the store from a samples table and a model folder (no weights loaded);
``run_extraction`` (or ``extract_activations`` with a loaded model) fills this task's share of it,
resumably and safely beside other array tasks. ``sae_store.store.append`` adds samples later.
"""

from sae_store.extract.config import DEFAULT_PROMPTS, ExtractConfig, parse_languages, parse_layers
from sae_store.extract.init import init_store
from sae_store.extract.model_info import describe_model
from sae_store.extract.run import ExtractSummary, extract_activations, plan, run_extraction
from sae_store.extract.writer import Float16OverflowWarning, NonFiniteError

__all__ = [
    "DEFAULT_PROMPTS",
    "ExtractConfig",
    "ExtractSummary",
    "Float16OverflowWarning",
    "NonFiniteError",
    "describe_model",
    "extract_activations",
    "init_store",
    "parse_languages",
    "parse_layers",
    "plan",
    "run_extraction",
]
