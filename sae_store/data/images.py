"""Image files: checking that they exist and decode, and loading them (the one place images are opened)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image


class ImageProblem(NamedTuple):
    """Why an image cannot be used."""

    reason: str
    """A short, stable reason: ``"missing file"``, ``"not a file"`` or ``"corrupt image"``."""
    detail: str
    """What went wrong, for people."""


def check_image(path: Path) -> ImageProblem | None:
    """Check that an image file exists and decodes completely.

    The file is opened and verified (which catches bad headers and checksums), then opened again
    and fully decoded (which catches truncated pixel data that ``verify`` lets through).

    Parameters
    ----------
    path : pathlib.Path
        The image file.

    Returns
    -------
    ImageProblem or None
        None if the image is usable, else why not.
    """
    if not path.exists():
        return ImageProblem("missing file", f"{str(path)!r} does not exist")
    if not path.is_file():
        return ImageProblem("not a file", f"{str(path)!r} is not a regular file")
    try:
        # Decompression-bomb warnings would otherwise be turned into errors by strict test configs;
        # PIL still raises DecompressionBombError for truly absurd sizes, which we report.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                im.load()
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return ImageProblem("corrupt image", f"{str(path)!r} cannot be decoded: {type(e).__name__}: {e}")
    return None


def load_images(paths: Sequence[Path]) -> tuple[list[Image.Image | None], list[str]]:
    """Open each image as RGB; a failure gives ``None`` and its reason instead of stopping the run."""
    images: list[Image.Image | None] = []
    errors: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
            errors.append("")
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
            images.append(None)
            errors.append(f"cannot load image {str(path)!r}: {type(e).__name__}: {e}")
    return images, errors


def load_image(path: Path, size: int) -> np.ndarray | None:
    """The image at ``path`` as (size, size, 3) uint8, squared as the processor does, or None."""
    (image,), _ = load_images([path])
    return None if image is None else square(image, size)


def square(image: Image.Image, size: int) -> np.ndarray:
    """``image`` as (size, size, 3) uint8 RGB, squared as the processor does (no crop)."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
