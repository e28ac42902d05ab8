"""Small file factories shared by the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

#: The type of the ``write_csv`` fixture: rows (header first) -> path of the written CSV.
WriteCsv = Callable[..., Path]


def write_png(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """Write a valid 8x8 PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format="PNG")
    return path
