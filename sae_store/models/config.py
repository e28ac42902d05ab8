"""How the commands that run the model (``extract``, ``caption``, ``intervene``) run it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sae_store.configbase import Settings, seed_setting, setting
from sae_store.device import DTYPE_ALIASES, device_setting

Dtype = Literal["auto", "bf16", "fp32", "fp16"]

#: The one declaration of "samples per forward pass" (``--batch-size`` of every model-running command).
FORWARD_BATCH: dict[str, Any] = {"default": 8, "help": "samples per forward pass", "ge": 1}


@dataclass(frozen=True)
class ModelRunConfig(Settings):
    """Where and in which precision the model runs (YAML ``model:``; checked when it is loaded)."""

    device: str = device_setting()
    dtype: Dtype = setting(
        "auto",
        help="compute precision: auto (bf16 on a GPU, fp32 on a CPU); fp16 is refused for Gemma 3, whose "
        "activations overflow it (bfloat16, float32 and float16 also accepted)",
        aliases=DTYPE_ALIASES,
    )
    """Compute dtype (see :func:`~sae_store.models.loader.resolve_dtype`; never float16 for Gemma 3)."""


#: The tiny model's sizes, declared once for ``make-tiny-model`` and the demo config's ``demo:`` section.
TINY_LAYERS: dict[str, Any] = {"default": 4, "help": "decoder layers of the tiny model", "ge": 1}
TINY_HIDDEN: dict[str, Any] = {
    "default": 64,
    "help": "residual stream width of the tiny model (a multiple of its head size: 16 up to 128, else 64)",
    "ge": 32,
}


def tiny_head_dim(hidden_size: int) -> int:
    """The attention head size of a tiny model of residual width ``hidden_size``."""
    return 16 if hidden_size <= 128 else 64


def tiny_hidden_problem(hidden_size: int) -> str | None:
    """Why ``hidden_size`` cannot be a tiny model's width (a template naming ``{hidden_size}``), or None."""
    head = tiny_head_dim(hidden_size)
    if hidden_size % head:
        return (
            f"{{hidden_size}} must be a multiple of {head} (the head size used for it), got {hidden_size}; "
            "try 64 (tiny) or 512 (medium)"
        )
    return None


@dataclass(frozen=True)
class TinyModelConfig(Settings):
    """The sizes and seed of a tiny random Gemma 3 (``make-tiny-model``)."""

    num_layers: int = setting(**TINY_LAYERS, flag="n-layers")
    hidden_size: int = setting(**TINY_HIDDEN, flag="hidden")
    seed: int = seed_setting("seed of the random weights")

    def check(self) -> None:
        problem = tiny_hidden_problem(self.hidden_size)
        if problem:
            raise self.rule_error(problem)
