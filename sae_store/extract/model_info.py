"""What a store records about its model, read from the model folder without loading the weights,
and the check that a model about to be used is the one a store was made with."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sae_store.errors import SaeStoreError
from sae_store.models.inputs import sequence_length
from sae_store.models.loader import load_processor, model_identity
from sae_store.store import ActivationStore, ModelInfo

#: Identity keys that must agree between a store and a model (the path may differ between nodes).
IDENTITY_KEYS = ("model_type", "architecture", "config_sha256", "weights_sha256")


def _json_safe(value: Any) -> Any:
    # Image processor settings hold tuples, enums and the like; the store's attributes are JSON.
    return json.loads(json.dumps(value, default=str))


def describe_model(model_dir: str | Path, prompts: Mapping[str, str]) -> ModelInfo:
    """Describe a model folder for :func:`~sae_store.store.create_store`, without loading weights.

    Reads the config (identity, sizes) and the processor (chat template, image processor settings),
    and counts the tokens one sample takes per language by templating each prompt with a blank image.

    Parameters
    ----------
    model_dir
        Local model folder (see :func:`sae_store.models.loader.check_model_dir`).
    prompts
        Instruction per language key.

    Raises
    ------
    ModelLoadError
        If the folder is incomplete or holds an unsupported architecture.
    """
    identity = model_identity(model_dir)
    processor = load_processor(model_dir)
    return ModelInfo(
        identity=identity,
        n_layers=int(identity["n_layers"]),
        hidden_size=int(identity["hidden_size"]),
        prompts=dict(prompts),
        tokens_per_language={lang: sequence_length(processor, p) for lang, p in prompts.items()},
        image_tokens=int(identity["mm_tokens_per_image"]),
        chat_template=str(getattr(processor, "chat_template", None) or ""),
        image_processor=_json_safe(processor.image_processor.to_dict()),
    )


def check_identity(store: ActivationStore, identity: Mapping[str, Any]) -> None:
    """Refuse a model whose identity differs from the one recorded in the store.

    The folder path may differ (a model copied to another node is the same model); the
    architecture and the content hashes of config and weights must not.
    """
    stored = store.attrs.get("model", {})
    diffs = [
        f"{key} {stored.get(key)!r} in the store vs {identity.get(key)!r}"
        for key in IDENTITY_KEYS
        if stored.get(key) != identity.get(key)
    ]
    if diffs:
        raise SaeStoreError(
            f"model {identity.get('name_or_path')!r} is not the model store {str(store.path)!r} was "
            f"made with ({stored.get('name_or_path')!r}): {'; '.join(diffs)}. Use that model folder, "
            "or create a new store for this model with `sae-store init`"
        )


def check_prompts(store: ActivationStore, processor: Any, languages: Sequence[str]) -> None:
    """Refuse a processor that would not reproduce the store's token layout for ``languages``.

    Checks the chat template and, per language, that the stored prompt still takes the recorded
    number of tokens (image tokens included).
    """
    problems = []
    template = str(getattr(processor, "chat_template", None) or "")
    if template != store.attrs.get("chat_template", ""):
        problems.append("the processor's chat template differs from the one recorded in the store")
    prompts = store.attrs.get("prompts", {})
    expected = store.attrs.get("tokens_per_language", {})
    for lang in languages:
        if lang not in prompts or lang not in expected:
            problems.append(f"language {lang!r} has no prompt or token count in the store attributes")
            continue
        n = sequence_length(processor, prompts[lang])
        if n != expected[lang]:
            problems.append(
                f"prompt {lang!r} ({prompts[lang]!r}) now takes {n} tokens, "
                f"the store expects {expected[lang]}"
            )
    if problems:
        raise SaeStoreError(
            f"store {str(store.path)!r} does not match this model's prompts and tokens: "
            f"{'; '.join(problems)}. "
            "Use the processor the store was made with, or create a new store with `sae-store init`"
        )
