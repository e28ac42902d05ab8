"""Token ids as text: the model's tokenizer as a plain function (loaded only when a folder is there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

#: Token id -> text.
TokenDecoder = Callable[[int], str]


def token_decoder(model_dir: str | Path | None) -> TokenDecoder | None:
    """The tokenizer of ``model_dir`` as a function, or None when there is no such folder here."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    from sae_store.models.loader import load_processor

    tokenizer = load_processor(model_dir).tokenizer
    return lambda token_id: str(tokenizer.decode([token_id]))
