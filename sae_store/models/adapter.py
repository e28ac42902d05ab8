"""Where a vision-language model keeps its decoder layers, and the facts the toolkit needs about it.

Each supported architecture has a :class:`ModelAdapter` factory in a registry keyed by
``config.model_type``. Extraction and interventions go through the adapter, never through
hard-coded attribute paths, so adding PaliGemma, Qwen2-VL or LLaVA means registering one factory
with :func:`register_adapter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sae_store.errors import ModelLoadError, SaeStoreError

__all__ = [
    "ModelAdapter",
    "check_image_geometry",
    "get_adapter",
    "hidden_from_output",
    "register_adapter",
    "replace_hidden",
    "supported_model_types",
]


@dataclass(frozen=True)
class ModelAdapter:
    """Facts about one loaded vision-language model and where its decoder layers live.

    Attributes
    ----------
    model_type : str
        ``config.model_type`` of the checkpoint (``"gemma3"``).
    n_layers : int
        Number of decoder layers of the language model.
    hidden_size : int
        Width of the residual stream (``d_in`` of an SAE trained on it).
    image_token_id : int
        Token id of the image placeholder that the vision features replace.
    mm_tokens_per_image : int
        Image tokens one image occupies in the sequence.
    image_grid : int
        Side of the square grid those tokens form (``sqrt(mm_tokens_per_image)``).
    layer_paths : tuple of str
        Dotted attribute paths tried in order to find the decoder layer list; several because the
        module tree moved between transformers versions.
    norm_paths : tuple of str
        Dotted attribute paths of the final norm, tried in order.
    """

    model_type: str
    n_layers: int
    hidden_size: int
    image_token_id: int
    mm_tokens_per_image: int
    image_grid: int
    layer_paths: tuple[str, ...]
    norm_paths: tuple[str, ...] = ()

    def decoder_layers(self, model: nn.Module) -> list[nn.Module]:
        """Return the decoder layers of ``model`` in order (hook their outputs for residual streams).

        Raises
        ------
        ModelLoadError
            If no known path holds a layer list of length :attr:`n_layers`.
        """
        for path in self.layer_paths:
            layers = _get_path(model, path)
            if isinstance(layers, nn.ModuleList) and len(layers) == self.n_layers:
                return list(layers)
        raise ModelLoadError(
            f"Cannot find the {self.n_layers} decoder layers of this {self.model_type!r} model: tried "
            f"{', '.join(repr(p) for p in self.layer_paths)} on {type(model).__name__}. The installed "
            "transformers version may have moved them; add its path to the adapter's layer_paths."
        )

    def final_norm(self, model: nn.Module) -> nn.Module:
        """Return the norm applied after the last decoder layer (before the LM head)."""
        for path in self.norm_paths:
            norm = _get_path(model, path)
            if isinstance(norm, nn.Module):
                return norm
        raise ModelLoadError(
            f"Cannot find the final norm of this {self.model_type!r} model: tried {list(self.norm_paths)}."
        )


def _get_path(obj: Any, path: str) -> Any:
    # None instead of AttributeError, so callers can try the next candidate path.
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def hidden_from_output(output: Any) -> torch.Tensor:
    """Return the hidden states from a decoder layer's output (a Tensor, or a tuple led by one).

    Some transformers versions return ``(hidden_states, attn_weights, ...)`` from each layer,
    others the bare tensor; hooks call this to support both.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"Unexpected decoder layer output of type {type(output).__name__}")


def replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """Return ``output`` with its hidden states replaced by ``hidden``, keeping its structure.

    A forward hook returns this to edit the residual stream whether the layer returns a Tensor or
    a tuple.
    """
    if isinstance(output, torch.Tensor):
        return hidden
    if isinstance(output, tuple | list) and output:
        return type(output)([hidden, *output[1:]])
    raise TypeError(f"Unexpected decoder layer output of type {type(output).__name__}")


def check_image_geometry(image_size: int, patch_size: int, mm_tokens_per_image: int) -> int:
    """Check that the vision tower's patch grid pools exactly to ``mm_tokens_per_image`` tokens.

    Gemma 3 average-pools the ``P x P`` patch grid (``P = image_size // patch_size``) with kernel
    ``P // sqrt(mm_tokens_per_image)``; a value that does not fit runs silently with a wrong token
    count, so it is refused here.

    Returns
    -------
    int
        The side of the image token grid, ``sqrt(mm_tokens_per_image)``.

    Raises
    ------
    SaeStoreError
        If the sizes are not positive, ``patch_size`` does not divide ``image_size``,
        ``mm_tokens_per_image`` is not a perfect square, or its root does not divide ``P``.
    """
    if min(image_size, patch_size, mm_tokens_per_image) <= 0:
        raise SaeStoreError(
            f"image_size, patch_size and mm_tokens_per_image must be positive, got {image_size}, "
            f"{patch_size} and {mm_tokens_per_image}."
        )
    if image_size % patch_size:
        raise SaeStoreError(
            f"image_size must be a multiple of patch_size, got image_size={image_size} and "
            f"patch_size={patch_size}."
        )
    patches = image_size // patch_size
    grid = math.isqrt(mm_tokens_per_image)
    if grid * grid != mm_tokens_per_image or patches % grid:
        valid = [t * t for t in range(1, patches + 1) if patches % t == 0]
        raise SaeStoreError(
            f"mm_tokens_per_image must be a perfect square whose root divides the {patches} patches "
            f"per side (image_size // patch_size = {image_size} // {patch_size}); got "
            f"mm_tokens_per_image={mm_tokens_per_image}. Valid values here: {valid}."
        )
    return grid


AdapterFactory = Callable[[Any], ModelAdapter]
_ADAPTERS: dict[str, AdapterFactory] = {}


def register_adapter(model_type: str, factory: AdapterFactory) -> None:
    """Register ``factory(config) -> ModelAdapter`` for checkpoints whose ``model_type`` matches."""
    _ADAPTERS[model_type] = factory


def supported_model_types() -> list[str]:
    """Return the ``config.model_type`` values that have an adapter, sorted."""
    return sorted(_ADAPTERS)


def get_adapter(config: Any) -> ModelAdapter:
    """Return the adapter for a transformers config (``PretrainedConfig``).

    Raises
    ------
    ModelLoadError
        If no adapter is registered for ``config.model_type``, or the config is inconsistent.
    """
    model_type = getattr(config, "model_type", None)
    factory = _ADAPTERS.get(str(model_type))
    if factory is None:
        raise ModelLoadError(unsupported_message(model_type))
    return factory(config)


def unsupported_message(model_type: object) -> str:
    """The error text for a checkpoint whose architecture has no adapter."""
    return (
        f"Unsupported model_type {model_type!r}: sae-store supports {supported_model_types()}. "
        "Point it at a Gemma 3 vision-language checkpoint (e.g. google/gemma-3-4b-it), or register an "
        "adapter for this architecture with sae_store.models.adapter.register_adapter()."
    )


def _gemma3_adapter(config: Any) -> ModelAdapter:
    text, vision = config.text_config, config.vision_config
    mm_tokens = int(config.mm_tokens_per_image)
    try:
        grid = check_image_geometry(int(vision.image_size), int(vision.patch_size), mm_tokens)
    except SaeStoreError as e:
        raise ModelLoadError(f"Inconsistent Gemma 3 config: {e}") from e
    return ModelAdapter(
        model_type="gemma3",
        n_layers=int(text.num_hidden_layers),
        hidden_size=int(text.hidden_size),
        image_token_id=int(config.image_token_id),
        mm_tokens_per_image=mm_tokens,
        image_grid=grid,
        # transformers >= 4.52 first; 4.50-4.51 kept the language model at the top level.
        layer_paths=("model.language_model.layers", "language_model.model.layers"),
        norm_paths=("model.language_model.norm", "language_model.model.norm"),
    )


register_adapter("gemma3", _gemma3_adapter)
