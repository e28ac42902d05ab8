"""Token ids as text: the model's tokenizer as a plain function (loaded only when a folder is there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

#: Token id -> text.
TokenDecoder = Callable[[int], str]


def token_decoder(model_dir: str | Path | None) -> TokenDecoder | None:
    """The tokenizer of ``model_dir`` as a function, or None when there is no such folder here. An id
    outside its vocabulary (a result made with another model) reads ``<id N>``."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    from sae_store.models.loader import load_processor

    tokenizer = load_processor(model_dir).tokenizer
    size = len(tokenizer)

    def decode(token_id: int) -> str:
        return str(tokenizer.decode([token_id])) if 0 <= token_id < size else f"<id {token_id}>"

    return decode
