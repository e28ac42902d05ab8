"""Fixtures of the model tests: one tiny Gemma 3 folder per session, loaded once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sae_store.models.loader import LoadedModel, load_model

EN_PROMPT = "Describe the person in this image in detail."
AR_PROMPT = "صف الشخص في هذه الصورة بالتفصيل."


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir: Path) -> LoadedModel:
    """The session's tiny model loaded on CPU in float32 (eval mode); do not modify it."""
    return load_model(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture
def images() -> list[Image.Image]:
    """Two random RGB images of different sizes (the processor resizes them)."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)),
    ]
