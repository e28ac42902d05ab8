"""Reading the JSON files the steps write (results, SAE configs), with one refusal for unreadable ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sae_store.errors import DataError, SaeStoreError


def read_json(path: Path, *, what: str = "", error: type[SaeStoreError] = DataError) -> Any:
    """Parse the JSON file ``path``; an unreadable or malformed one raises ``error`` naming the file
    (``what`` says what it is, e.g. ``"results file "``) and how to recover."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(
            f"{what}{str(path)!r} is unreadable or not JSON ({e}); rerun the step that wrote it or "
            "remove the file"
        ) from e
