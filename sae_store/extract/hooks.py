"""One forward pass that hands every requested layer's residual stream to a callback."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sae_store.models.adapter import ModelAdapter, hidden_from_output

#: Receives ``(position in the requested layers, hidden states [B, T, d])`` for each layer.
LayerSink = Callable[[int, torch.Tensor], None]


class _StopForward(Exception):
    """Raised by the last requested layer's hook: later layers, the norm and the LM head are not needed."""


def capture_layers(
    model: nn.Module,
    adapter: ModelAdapter,
    layers: Sequence[int],
    inputs: Mapping[str, Any],
    sink: LayerSink,
) -> None:
    """Run ``model(**inputs)`` once, calling ``sink`` with the output of each layer in ``layers``.

    Forward hooks on the decoder layers see their residual-stream outputs (a Tensor, or the first
    element of a tuple in other transformers versions). The pass stops right after the highest
    requested layer, which skips the rest of the decoder and the vocabulary projection.

    Parameters
    ----------
    model
        The vision-language model (eval mode).
    adapter
        Where ``model`` keeps its decoder layers.
    layers
        Decoder layer indices to capture, in any order, without repeats.
    inputs
        The batch (``input_ids``, ``attention_mask``, ``pixel_values``, ``token_type_ids``).
    sink
        Called as ``sink(k, hidden)`` for ``layers[k]``, in the order the model runs them.
    """
    modules = adapter.decoder_layers(model)
    last = max(layers)
    handles = []

    def make_hook(k: int, layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            sink(k, hidden_from_output(output))
            if layer == last:
                raise _StopForward

        return hook

    try:
        for k, layer in enumerate(layers):
            handles.append(modules[layer].register_forward_hook(make_hook(k, layer)))
        with torch.inference_mode():
            model(**inputs)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
