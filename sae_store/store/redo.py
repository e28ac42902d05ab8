"""Which command rewrites each part of a store, and which of the root's arrays are missing.

Every array belongs to the step that writes it: ``extract`` (the per-block arrays of the root),
``encode`` (``features``), ``caption`` (``generation``), ``analyze`` and ``intervene`` (the groups
below ``analysis``) - and ``init``, whose coordinates and sample labels no command rebuilds in place:
only a new store restores them. ``sae-store verify --repair`` and the messages of a damaged store
name these commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sae_store.store import schema as S

#: Root arrays the extraction writes for every block (``sae-store extract`` redoes their files).
BLOCK_ARRAYS = (
    S.ACTIVATIONS, S.INPUT_IDS, S.TOKEN_ROLE, S.N_TOKENS, S.MAX_ABS, S.NONFINITE, S.COMPLETE,
    *S.SPARSE_VARIABLES,
)  # fmt: skip
#: Groups whose arrays are written block by block (or layer by layer) under their own ``complete``
#: flags, and repeat the root's coordinates.
FLAGGED_GROUPS = (S.FEATURES, S.GENERATION, S.EVALUATION)


def missing_arrays(path: Path) -> list[str]:
    """The root arrays of the schema whose metadata (``<name>/zarr.json``) is not in the store."""
    return [name for name in S.ROOT_ARRAYS if not (path / name / "zarr.json").is_file()]


def _model(attrs: dict[str, Any]) -> str:
    return str(attrs.get("model", {}).get("name_or_path") or "MODEL_DIR")


def init_command(path: Path, attrs: dict[str, Any]) -> str:
    """The command that makes a new store like this one (its samples table is not kept in the store)."""
    return f"sae-store init NEW_STORE --samples SAMPLES.csv --model {_model(attrs)}"


def missing_arrays_message(path: Path, attrs: dict[str, Any], missing: list[str]) -> str:
    """Why a store lacking root arrays cannot be written or read, and what restores it."""
    return (
        f"store {str(path)!r} lacks the array(s) {missing} (no {missing[0]}/zarr.json): they were deleted "
        "or damaged, and no command rebuilds the arrays `sae-store init` made in place; restore the store "
        f"from a backup, or create a new one with `{init_command(path, attrs)}` and extract into it"
    )


def _saes_dir(path: Path) -> str:
    """The ``--saes`` folder the features group was encoded from (recorded per layer), or ``DIR``."""
    try:
        saes = S.decode_attrs(json.loads((path / S.FEATURES / "zarr.json").read_text())["attributes"])["saes"]
        folders = [str(v["folder"]) for v in saes.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "DIR"
    if not folders:
        return "DIR"
    return os.path.commonpath(folders) if len(folders) > 1 else str(Path(folders[0]).parent)


def redo_command(path: Path, attrs: dict[str, Any], key: str) -> str | None:
    """The command that rewrites what ``verify --repair`` cleared of array ``key`` (``group/name``), or
    None for the arrays made by ``init`` (see :func:`init_command`)."""
    group, _, name = key.rpartition("/")
    if not group:
        return f"sae-store extract {path} --model {_model(attrs)}" if name in BLOCK_ARRAYS else None
    top = group.split("/")[0]
    if top == S.FEATURES:
        return f"sae-store encode {path} --saes {_saes_dir(path)}"
    if top == S.GENERATION:
        return f"sae-store caption {path} --model {_model(attrs)}"
    if top == S.EVALUATION:
        name = group.split("/")[-1]
        return f"sae-store evaluate {path} --saes {name}=DIR (the SAE set recorded in {group}'s attributes)"
    if top == S.EXPLANATIONS:
        return f"sae-store explain {path} --saes {_saes_dir(path)} (the explainer recorded in its attributes)"
    if group.startswith(f"{S.INTERVENE}/"):
        return f"sae-store intervene {path} --saes DIR --mode MODE (as recorded in {group}'s attributes)"
    return f"sae-store analyze {group.split('/')[1] if group.count('/') == 1 else 'all'} {path}"
