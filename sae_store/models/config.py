"""How the commands that run the model (``extract``, ``caption``, ``intervene``) run it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sae_store.configbase import Settings, setting
from sae_store.device import device_setting

#: The one declaration of "samples per forward pass" (``--batch-size`` of every model-running command).
FORWARD_BATCH: dict[str, Any] = {"default": 8, "help": "samples per forward pass", "metavar": "B", "ge": 1}


@dataclass(frozen=True)
class ModelRunConfig(Settings):
    """Where and in which precision the model runs (YAML ``model:``; checked when it is loaded)."""

    device: str = device_setting()
    dtype: str = setting(
        "auto", help="auto (bfloat16 on GPU, float32 on CPU), bfloat16 or float32", metavar="DTYPE"
    )
    """Compute dtype (see :func:`~sae_store.models.loader.resolve_dtype`; never float16 for Gemma 3)."""
