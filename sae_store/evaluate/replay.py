"""Running the model again from one layer on, for runs that change only that layer's output.

The clean pass of a batch records the image encoder's output and the hooked decoder layer's output;
each later run of the same batch (an ablation, an SAE spliced in) replays them: the image encoder
returns its recorded features without running the vision tower, and the decoder layers up to the
hooked one return the recorded output without computing. The hooks on the hooked layer still run
(they see its recorded output), so every layer after it, the final norm and the LM head compute as in
a full forward pass. A run then costs the layers after the hooked one, not the whole model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from torch import nn

#: The method vision-language models call to turn pixels into image-token features.
_IMAGE_ENCODER = "get_image_features"


@contextmanager
def _instance_attr(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name = value`` (an instance attribute shadowing a method) while the block runs; the previous
    instance attribute, if any (an accelerate hook replaces ``forward`` so), is put back."""
    before = vars(obj).get(name, _MISSING)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if before is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, before)


_MISSING = object()


class Replay:
    """The recorded pass of one batch, replayed up to ``layers[layer]``."""

    def __init__(self, model: nn.Module, layers: list[nn.Module], layer: int) -> None:
        self.layers, self.layer = layers, layer
        owners = [model, getattr(model, "model", None)]
        self.encoders = [o for o in owners if o is not None and callable(getattr(o, _IMAGE_ENCODER, None))]
        self.features: dict[int, Any] = {}
        self.output: Any = None

    @contextmanager
    def record(self) -> Iterator[None]:
        """Record this batch's image features and the hooked layer's output (the clean pass)."""
        self.features, self.output = {}, None

        def keep(_module: nn.Module, _args: Any, output: Any) -> None:
            self.output = output

        with ExitStack() as stack:
            for owner in self.encoders:
                stack.enter_context(_instance_attr(owner, _IMAGE_ENCODER, self._recording(owner)))
            handle = self.layers[self.layer].register_forward_hook(keep)
            stack.callback(handle.remove)
            yield

    def _recording(self, owner: Any) -> Callable[..., Any]:
        original = getattr(owner, _IMAGE_ENCODER)

        def encode(*args: Any, **kwargs: Any) -> Any:
            self.features[id(owner)] = out = original(*args, **kwargs)
            return out

        return encode

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the same batch from the recording: no vision tower, no layer up to the hooked one."""
        if self.output is None:
            raise RuntimeError("Replay.replay() before a recorded pass of the batch")
        output = self.output

        def recorded(*_args: Any, **_kwargs: Any) -> Any:
            return output

        with ExitStack() as stack:
            for owner in self.encoders:
                if id(owner) in self.features:
                    feats = self.features[id(owner)]
                    stack.enter_context(_instance_attr(owner, _IMAGE_ENCODER, lambda *a, f=feats, **k: f))
            for module in self.layers[: self.layer + 1]:
                stack.enter_context(_instance_attr(module, "forward", recorded))
            yield
