"""An SAE folder's files: their names, whether a folder holds an SAE, where a layer's SAE goes.

Our folder is a SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) with our provenance under
``cfg.json``'s ``sae_store`` key and ``metrics.jsonl`` from training; sparsify and Gemma Scope folders
are read too (:mod:`~sae_store.train.formats`). This module imports nothing heavy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

#: Layouts ``export-saes`` writes (every command taking ``--saes`` reads them too).
Layout = Literal["sparsify", "gemma-scope"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
METRICS_FILE = "metrics.jsonl"
SPARSIFY_WEIGHTS_FILE = "sae.safetensors"
GEMMA_SCOPE_FILES = ("params.safetensors", "params.npz")
#: Key of our provenance inside cfg.json.
PROVENANCE_KEY = "sae_store"


def has_sae(folder: Path) -> bool:
    """``folder`` holds a finished SAE in a format :func:`~sae_store.train.formats.load_sae` reads."""
    files = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return (CFG_FILE in files and bool(files & {WEIGHTS_FILE, SPARSIFY_WEIGHTS_FILE})) or bool(
        files & set(GEMMA_SCOPE_FILES)
    )


def folder_format(folder: Path, cfg: Mapping[str, Any]) -> str | None:
    """The format of the SAE in ``folder`` (``cfg`` is its ``cfg.json``, {} if none): ``sae_store``,
    ``saelens``, ``sparsify`` or ``gemma_scope``; None when the folder holds no SAE."""
    if (folder / WEIGHTS_FILE).is_file() and cfg:
        return "sae_store" if PROVENANCE_KEY in cfg else "saelens"
    if (folder / SPARSIFY_WEIGHTS_FILE).is_file() and cfg:
        return "sparsify"
    return "gemma_scope" if any((folder / f).is_file() for f in GEMMA_SCOPE_FILES) else None


def layer_folder(out_dir: str | os.PathLike[str], layer: int) -> Path:
    """``<out_dir>/layer_<layer>``: where ``sae-store train`` puts the SAE of ``layer``."""
    return Path(out_dir) / f"layer_{layer}"


def is_trained(folder: Path) -> bool:
    """The folder holds a finished SAE written by this toolkit."""
    cfg = folder / CFG_FILE
    if not (cfg.is_file() and (folder / WEIGHTS_FILE).is_file()):
        return False
    try:
        return PROVENANCE_KEY in json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False
